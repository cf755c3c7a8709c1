"""Run ASGI apps (FastAPI, Starlette, any ASGI 3 app) on Alibaba Cloud Function Compute.

from fc_bridge import bridge

handler = bridge(app)               # FC calls handler(environ, start_response)
initializer = handler.initializer   # FC's initializer hook: lifespan startup
pre_stop = handler.pre_stop         # FC's pre_stop hook: lifespan shutdown

Local tooling (``fc-bridge serve``, ``fc_bridge.local.asgi_app``) lives in ``fc_bridge.local``,
which nothing here imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._bridge import Bridge, bridge
from ._limits import Limits
from ._loop import SharedLoop

if TYPE_CHECKING:
    from ._errors import (
        ConfigError,
        FCBridgeError,
        LifespanError,
        ReentrantCallError,
        TargetError,
        UnsupportedEventError,
    )
    from ._function import FunctionInfo
    from ._types import ASGIApp, ContextLike, EventHandler, FCContext
    from ._version import __version__
    from ._web import WebFunction

# Imported on first use: an FC 2.0 or FC 3.0 function never needs them, and each module costs
# its import on every cold start. The exceptions too: a working function raises none (their
# classes, six of them, cost more to make than most modules), and a raise imports them.
_LAZY = {
    "ASGIApp": "_types",
    "ConfigError": "_errors",
    "ContextLike": "_types",
    "EventHandler": "_types",
    "FCBridgeError": "_errors",
    "FCContext": "_types",
    "FunctionInfo": "_function",
    "LifespanError": "_errors",
    "ReentrantCallError": "_errors",
    "TargetError": "_errors",
    "UnsupportedEventError": "_errors",
    "WebFunction": "_web",
    "__version__": "_version",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fc_bridge' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
