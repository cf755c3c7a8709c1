"""``bridge(app)``: the one object FC calls, whatever the generation or the hook."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._context import request_id
from ._errors import ConfigError, LifespanError, UnsupportedEventError
from ._event import describe, event_response, is_http_event, load_event, parse_event
from ._http import HTTPHandler, Response
from ._lifespan import Lifespan
from ._limits import Limits, Rejection, bad_request
from ._loop import SharedLoop, shared_loop
from ._urls import check_root_path
from ._wsgi import parse_environ, write_response

if TYPE_CHECKING:
    from ._types import ASGIApp, FCContext, LifespanMode, StartResponse, WSGIEnviron

logger = logging.getLogger("fc_bridge")

LIFESPAN_MODES = ("auto", "on", "off")
SCHEMES = ("auto", "http", "https")
SET_COOKIE_MODES = ("case", "join")

EventHandler = Callable[[Any, Any], Any]


class Bridge:
    """Serves an ASGI app to Function Compute, whichever way FC calls Python.

    Deploy it as the function's handler (``handler = bridge(app)``). FC 2.0 calls it as a WSGI
    app, ``handler(environ, start_response)``; FC 3.0 calls it with an HTTP trigger's event,
    ``handler(event, context)``, and gets the response dict back. ``handler.initializer`` and
    ``handler.pre_stop`` are FC's lifecycle hooks: the app's lifespan startup and shutdown.

    Options:
        lifespan: ``"auto"`` runs the app's lifespan if it has one; ``"on"`` requires it, so a
            failed startup fails the initializer and every request answers 500; ``"off"``
            never runs it.
        root_path: the ASGI ``root_path`` to use instead of the one detected from FC's URL
            prefix (``/2016-08-15/proxy/<service>/<function>`` on FC's default address).
        limits: FC's size limits to enforce; :class:`Limits` defaults are FC's own.
        scheme: the URL scheme the app sees. ``"auto"`` trusts ``X-Forwarded-Proto`` and falls
            back to what FC reports (always ``http`` on FC 2.0, ``https`` on FC 3.0).
        task_timeout: how many seconds a request waits, after the app has returned, for the
            asyncio tasks it started (``asyncio.create_task`` in an endpoint): FC may freeze the
            instance as soon as it has the response. ``0`` does not wait.
        on_event: ``(event, context) -> result`` (or a coroutine function) for events from
            other FC 3.0 triggers (timer, OSS, MNS, ...); it gets the event exactly as FC
            passed it. Without it such events raise :class:`UnsupportedEventError`.
        set_cookie: how an FC 3.0 response dict carries several ``Set-Cookie`` values, which
            a ``{name: value}`` dict cannot hold as such: ``"case"`` (default) gives each its
            own key, spelled with a different letter case, which HTTP treats as the same
            header; ``"join"`` joins them with ``", "``, which browsers cannot split reliably.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifespan: LifespanMode = "auto",
        root_path: str | None = None,
        limits: Limits | None = None,
        scheme: str = "auto",
        task_timeout: float = 10.0,
        on_event: EventHandler | None = None,
        set_cookie: str = "case",
        loop: SharedLoop | None = None,
    ) -> None:
        if not callable(app):
            raise ConfigError(f"app must be an ASGI application (a callable), got {app!r}.")
        if lifespan not in LIFESPAN_MODES:
            raise ConfigError(f'lifespan must be "auto", "on" or "off", got {lifespan!r}.')
        if scheme not in SCHEMES:
            raise ConfigError(f'scheme must be "auto", "http" or "https", got {scheme!r}.')
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigError(f"limits must be a fc_bridge.Limits, got {limits!r}.")
        if type(task_timeout) not in (int, float) or not 0 <= task_timeout < float("inf"):
            raise ConfigError(
                f"task_timeout must be a number of seconds >= 0, got {task_timeout!r}."
            )
        if on_event is not None and not callable(on_event):
            raise ConfigError(f"on_event must be a callable (event, context), got {on_event!r}.")
        if set_cookie not in SET_COOKIE_MODES:
            raise ConfigError(f'set_cookie must be "case" or "join", got {set_cookie!r}.')
        self.app = app
        self.lifespan: LifespanMode = lifespan
        self.root_path = check_root_path(root_path)
        self.limits = limits or Limits()
        self.scheme = scheme
        self.task_timeout = task_timeout
        self.on_event = on_event
        self.set_cookie = set_cookie
        self._loop = loop or shared_loop
        self._lifespan = Lifespan(app, lifespan)
        self._http = HTTPHandler(app, self._lifespan, self.limits, task_timeout)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(app={self.app!r}, lifespan={self.lifespan!r}, "
            f"root_path={self.root_path!r}, scheme={self.scheme!r})"
        )

    def __call__(self, first: Any, second: Any) -> Any:
        """FC's entry point: a WSGI call (FC 2.0) or an event call (FC 3.0), told apart by the
        arguments: an environ is a dict and start_response a callable (FC's context is not)."""
        if isinstance(first, dict) and callable(second):
            return self.wsgi(first, second)
        return self.event(first, second)

    def wsgi(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        """FC 2.0's HTTP handler: serve one request given as a WSGI environ."""
        rid = request_id(environ.get("fc.context"), environ.get("HTTP_X_FC_REQUEST_ID"))
        try:
            parsed = parse_environ(
                environ, root_path=self.root_path, scheme=self.scheme, limits=self.limits
            )
            response = self._serve(parsed, rid)
        except Exception as exc:
            response = self._failed(exc, rid)
        return write_response(response, start_response, environ)

    def event(self, event: object, context: FCContext) -> Any:
        """FC 3.0's handler: answer an HTTP trigger's event with FC's response dict, and hand
        events of other triggers to ``on_event``."""
        loaded = load_event(event)
        if loaded is None or not is_http_event(loaded):
            if self.on_event is not None:
                return self._other_event(event, context)
            if loaded is None:
                rejection = bad_request(f"The event is not valid JSON: got {describe(event)}.")
                rejection.log(request_id(context))
                return event_response(Response.rejection(rejection), self.set_cookie)
            raise UnsupportedEventError(
                f"fc_bridge got an event that is not an HTTP request ({describe(event)}); "
                "pass bridge(app, on_event=...) to handle events of other triggers."
            )
        rid = request_id(context, loaded["requestContext"].get("requestId"))
        try:
            parsed = parse_event(
                loaded, context, root_path=self.root_path, scheme=self.scheme, limits=self.limits
            )
            response = self._serve(parsed, rid)
        except Exception as exc:
            response = self._failed(exc, rid)
        return event_response(response, self.set_cookie)

    def _serve(self, parsed: Any, rid: str) -> Response:
        if isinstance(parsed, Rejection):
            parsed.log(rid)
            return Response.rejection(parsed)
        scope, body = parsed
        response: Response = self._loop.run(self._http(scope, body, rid))
        return response

    @staticmethod
    def _failed(exc: Exception, rid: str) -> Response:
        # An exception escaping the handler becomes FC's opaque 502; a 500 with a log record
        # that names the request is more use to everyone.
        logger.error("fc_bridge failed to serve the request [request_id=%s]", rid, exc_info=exc)
        return Response.internal_error(exc)

    def _other_event(self, event: Any, context: Any) -> Any:
        handler = self.on_event
        if inspect.iscoroutinefunction(handler):
            return self._loop.run(handler(event, context))
        return handler(event, context)  # type: ignore[misc]

    def local(
        self,
        mode: str = "fc2",
        *,
        concurrency: int = 1,
        prefix: str | None = None,
        function: Any = None,
    ) -> ASGIApp:
        """An ASGI app that serves this bridge the way FC would, for any ASGI server.

        ``local_app = handler.local()`` then ``uvicorn main:local_app --reload``: requests go
        through FC's checks and this bridge, as in production. ``mode`` is ``"fc2"`` (FC 2.0's
        WSGI call), ``"fc3"`` (FC 3.0 events) or ``"web"`` (the app served directly, as FC's
        custom runtime runs it); ``concurrency`` is FC's instance concurrency; ``prefix``
        serves the app under FC's default-address prefix; ``function`` is a
        ``FunctionInfo`` describing the function for the contexts (default: environment).
        """
        from ._frontend import MODES, EmulatedFC
        from ._web import WebFunction

        if mode not in MODES:
            raise ConfigError(f'mode must be "fc2", "fc3" or "web", got {mode!r}.')
        if mode == "web":
            return WebFunction(
                self.app,
                lifespan=self.lifespan,
                limits=self.limits,
                root_path=self.root_path if prefix is None else prefix,
                function=function,
            )
        return EmulatedFC(self, mode, concurrency=concurrency, prefix=prefix, function=function)

    def initializer(self, context: FCContext | None = None) -> None:
        """FC's initializer hook: run the app's lifespan startup, once per instance.

        Raises :class:`LifespanError` if startup fails, so FC reports the failed initializer
        and retries it on a new instance instead of serving a half-started app.
        """
        self._loop.run(self._lifespan.startup(context))
        if self._lifespan.failure is not None:
            raise LifespanError(f"ASGI {self._lifespan.failure}")

    def pre_stop(self, context: FCContext | None = None) -> None:
        """FC's pre_stop hook: run the app's lifespan shutdown. Raises LifespanError if it fails."""
        before = self._lifespan.failure
        self._loop.run(self._lifespan.shutdown())
        if self._lifespan.failure is not None and self._lifespan.failure != before:
            raise LifespanError(f"ASGI {self._lifespan.failure}")


bridge = Bridge
"""``handler = bridge(app)``: the spelling used in deployed code; the same as :class:`Bridge`."""
