"""``python -m fc_bridge``: the same as the ``fc-bridge`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
