"""Run ASGI apps (FastAPI, Starlette, any ASGI 3 app) on Alibaba Cloud Function Compute.

from fc_bridge import bridge

handler = bridge(app)               # FC calls handler(environ, start_response)
initializer = handler.initializer   # FC's initializer hook: lifespan startup
pre_stop = handler.pre_stop         # FC's pre_stop hook: lifespan shutdown

Local tooling (``fc-bridge serve``, ``fc_bridge.local.asgi_app``) lives in ``fc_bridge.local``,
which nothing here imports.
"""

from __future__ import annotations

from ._bridge import Bridge, bridge
from ._context import FunctionInfo
from ._errors import (
    ConfigError,
    FCBridgeError,
    LifespanError,
    ReentrantCallError,
    TargetError,
    UnsupportedEventError,
)
from ._limits import Limits
from ._loop import SharedLoop
from ._types import ASGIApp, ContextLike, EventHandler, FCContext
from ._version import __version__
from ._web import WebFunction

__all__ = [
    "ASGIApp",
    "Bridge",
    "ConfigError",
    "ContextLike",
    "EventHandler",
    "FCBridgeError",
    "FCContext",
    "FunctionInfo",
    "LifespanError",
    "Limits",
    "ReentrantCallError",
    "SharedLoop",
    "TargetError",
    "UnsupportedEventError",
    "WebFunction",
    "__version__",
    "bridge",
]
