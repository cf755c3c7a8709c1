"""The bridge's options, validated in one place for every way a request reaches the app.

Each check raises :class:`ConfigError` with one sentence naming the option and the bad value, so
``prefix="api"`` gets the same answer from ``bridge(...)``, ``fc_bridge.local.asgi_app(...)``
and ``fc-bridge serve``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ._context import function_timeout
from ._limits import Limits

if TYPE_CHECKING:
    from ._errors import ConfigError
    from ._types import EventHandler, LifespanMode, Timeout

LIFESPAN_MODES = ("auto", "on", "off")
SCHEMES = ("auto", "http", "https")
SET_COOKIE_MODES = ("case", "join")

# How long before FC's own timeout the bridge answers 504 itself, so the answer, and the log
# record saying where the app was stuck, get out before FC cuts the invocation off.
MAX_MARGIN = 3.0
# After cancelling a request at its timeout, how long the app has to wind down.
MAX_GRACE = 1.0
# Hooks bounded when FC's context says nothing: FC's own maximums for them.
INITIALIZER_TIMEOUT = 300.0
PRE_STOP_TIMEOUT = 90.0


def config_error(message: str) -> ConfigError:
    """The :class:`ConfigError` to raise. The exceptions are imported when one is raised: a
    function whose options are valid never needs them, and they cost its cold start."""
    from ._errors import ConfigError

    return ConfigError(message)


def check_path_prefix(value: object, option: str) -> str | None:
    """A URL path prefix option (``root_path``, ``prefix``): None, or ``/a/b`` with no
    trailing slash (``"/"`` and ``""`` mean none)."""
    if value is None:
        return None
    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise config_error(f'{option} {value!r} must be None or a path starting with "/".')
    return value.rstrip("/")


def check_seconds(value: object, option: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if type(value) not in (int, float) or not 0 <= value < math.inf:  # type: ignore[operator]
        extra = ", or None" if allow_none else ""
        raise config_error(f"{option} must be a number of seconds >= 0{extra}, got {value!r}.")
    return float(value)  # type: ignore[arg-type]


def check_choice(value: object, option: str, choices: tuple[str, ...]) -> Any:
    if value not in choices:
        names = ", ".join(f'"{c}"' for c in choices[:-1]) + f' or "{choices[-1]}"'
        raise config_error(f"{option} must be {names}, got {value!r}.")
    return value


class Options:
    """Everything a request's handling depends on besides the app. Immutable by convention."""

    __slots__ = (
        "auto_timeout",
        "forwarded",
        "host",
        "lifespan",
        "limits",
        "on_event",
        "root_path",
        "scheme",
        "set_cookie",
        "task_timeout",
        "timeout",
    )

    def __init__(
        self,
        *,
        lifespan: LifespanMode = "auto",
        root_path: str | None = None,
        limits: Limits | None = None,
        scheme: str = "auto",
        forwarded: int = 0,
        host: str | None = None,
        task_timeout: float = 10.0,
        timeout: Timeout = "auto",
        on_event: EventHandler | None = None,
        set_cookie: str = "case",
    ) -> None:
        self.lifespan: LifespanMode = check_choice(lifespan, "lifespan", LIFESPAN_MODES)
        self.root_path = check_path_prefix(root_path, "root_path")
        if limits is not None and not isinstance(limits, Limits):
            raise config_error(f"limits must be a fc_bridge.Limits, got {limits!r}.")
        self.limits = limits or Limits()
        self.scheme: str = check_choice(scheme, "scheme", SCHEMES)
        if type(forwarded) is not int or not 0 <= forwarded <= 16:
            raise config_error(
                f"forwarded must be the number of proxies to trust, 0 to 16, got {forwarded!r}."
            )
        self.forwarded = forwarded
        if host is not None and (not isinstance(host, str) or not host or "/" in host):
            raise config_error(f'host must be a host name such as "api.example.com", got {host!r}.')
        self.host = host
        self.task_timeout = check_seconds(task_timeout, "task_timeout") or 0.0
        if timeout != "auto":
            timeout = check_seconds(timeout, 'timeout (or "auto")', allow_none=True)
        self.timeout: Timeout = timeout
        if on_event is not None and not callable(on_event):
            raise config_error(f"on_event must be a callable (event, context), got {on_event!r}.")
        self.on_event = on_event
        self.set_cookie: str = check_choice(set_cookie, "set_cookie", SET_COOKIE_MODES)
        self.auto_timeout: float | None = None  # the "auto" timeout, once a context has told it

    def request_timeout(self, context: object) -> float | None:
        """The ``"auto"`` timeout: the function's timeout from FC's context, minus a margin of
        a fifth of it, at most ``MAX_MARGIN`` seconds, so the bridge answers before FC gives
        up; None (no bound) when the context does not say. Remembered once known."""
        total = function_timeout(context)
        if total is None:
            return None
        self.auto_timeout = total - min(MAX_MARGIN, total / 5)
        return self.auto_timeout


def hook_timeout(context: object, fallback: float) -> float:
    """How long a lifecycle hook may take: the function's timeout, at most ``fallback``."""
    timeout = function_timeout(context)
    return fallback if timeout is None else min(timeout, fallback)


def grace(timeout: float) -> float:
    """How long a cancelled request may take to wind down before its caller is released."""
    return min(MAX_GRACE, timeout / 10)
