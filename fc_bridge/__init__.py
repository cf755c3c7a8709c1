"""Run ASGI apps (FastAPI, Starlette, any ASGI 3 app) on Alibaba Cloud Function Compute.

from fc_bridge import bridge

handler = bridge(app)               # FC calls handler(environ, start_response)
initializer = handler.initializer   # FC's initializer hook: lifespan startup
pre_stop = handler.pre_stop         # FC's pre_stop hook: lifespan shutdown
"""

from __future__ import annotations

from ._bridge import Bridge, bridge
from ._errors import (
    ConfigError,
    FCBridgeError,
    LifespanError,
    ReentrantCallError,
    TargetError,
    UnsupportedEventError,
)
from ._limits import Limits
from ._version import __version__

__all__ = [
    "Bridge",
    "ConfigError",
    "FCBridgeError",
    "LifespanError",
    "Limits",
    "ReentrantCallError",
    "TargetError",
    "UnsupportedEventError",
    "__version__",
    "bridge",
]
