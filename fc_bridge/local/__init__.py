"""Local tooling: FC's side of an invocation, on a laptop or in tests. Never deployed.

The deployed handler knows nothing of this package: it wraps the handler from outside, as
Starlette's TestClient wraps an app::

    from fc_bridge.local import asgi_app
    local_app = asgi_app(handler, "fc2")        # uvicorn main:local_app --reload

``fc-bridge serve`` and ``fc-bridge invoke`` (``python -m fc_bridge.local``) are built on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from .._function import FunctionInfo, make_context

if TYPE_CHECKING:
    from .._bridge import Bridge
    from .frontend import MODES, EmulatedFC, LocalWeb

__all__ = ["MODES", "EmulatedFC", "FunctionInfo", "LocalWeb", "asgi_app", "make_context"]

# The front ends are imported when first named: a deployed web function runs the CLI from this
# package (serve --behind-fc) and needs none of them.
_FRONTEND = frozenset({"MODES", "EmulatedFC", "LocalWeb"})


def __getattr__(name: str) -> Any:
    if name in _FRONTEND:
        from . import frontend

        return getattr(frontend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def asgi_app(
    handler: Bridge,
    mode: str = "fc2",
    *,
    concurrency: int = 1,
    prefix: str | None = None,
    function: FunctionInfo | None = None,
    per_request: bool = False,
) -> Any:
    """An ASGI app that serves ``handler`` the way FC would, for any ASGI server.

    ``mode`` is ``"fc2"`` (FC 2.0's WSGI call), ``"fc3"`` (FC 3.0 events) or ``"web"`` (a
    custom runtime's server); ``concurrency`` is FC's instance concurrency (fc2/fc3);
    ``prefix`` serves the function under FC's default-address URL prefix; ``function``
    describes the function for the contexts (default: the ``FC_*`` environment variables);
    ``per_request`` lets fc_bridge.testing's clients set a request's context.
    """
    from .frontend import MODES, EmulatedFC, LocalWeb

    if mode not in MODES:
        raise ConfigError(f'mode must be "fc2", "fc3" or "web", got {mode!r}.')
    if mode == "web":
        return LocalWeb(handler, prefix=prefix, function=function, per_request=per_request)
    return EmulatedFC(
        handler,
        mode,
        concurrency=concurrency,
        prefix=prefix,
        function=function,
        per_request=per_request,
    )
