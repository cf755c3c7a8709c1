"""Test a function the way FC calls it: ``FCClient``, ``AsyncFCClient`` and FC's events.

Local tooling (it needs the ``local`` extra: Starlette's TestClient, httpx); nothing deployed
imports it. See :mod:`fc_bridge.local.testing` and README, "Test like FC".
"""

from __future__ import annotations

from .local import events
from .local.testing import AsyncFCClient, FCClient

__all__ = ["AsyncFCClient", "FCClient", "events"]
