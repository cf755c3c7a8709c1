"""``bridge(app)``: the one object FC calls, whatever the generation or the hook."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any

from ._context import request_id
from ._headers import BUILTIN, PLAIN
from ._http import HTTPHandler, Response
from ._lifespan import Lifespan
from ._limits import Limits, Rejection, bad_request
from ._loop import SharedLoop, shared_loop
from ._options import INITIALIZER_TIMEOUT, PRE_STOP_TIMEOUT, Options, config_error, hook_timeout

# Each deployed function is called one way only, so the module for the other way (a fifth of the
# bridge's import time) is imported on the first call that needs it, not at cold start.
if TYPE_CHECKING:
    from . import _event, _wsgi
    from ._types import (
        ASGIApp,
        ContextLike,
        EventHandler,
        LifespanMode,
        StartResponse,
        Timeout,
        WSGIEnviron,
    )
else:
    _event = _wsgi = None

logger = logging.getLogger("fc_bridge")


class Bridge:
    """Serves an ASGI app to Function Compute, whichever way FC calls Python.

    Deploy it as the function's handler (``handler = bridge(app)``). FC 2.0 calls it as a WSGI
    app, ``handler(environ, start_response)``; FC 3.0 calls it with an HTTP trigger's event,
    ``handler(event, context)``, and gets the response dict back. ``handler.initializer``,
    ``handler.pre_stop`` and ``handler.pre_freeze`` are FC's lifecycle hooks.

    Options:
        lifespan: ``"auto"`` runs the app's lifespan if it has one; ``"on"`` requires it, so a
            failed startup fails the initializer and every request answers 500; ``"off"``
            never runs it.
        root_path: the ASGI ``root_path`` to use instead of the one detected from FC's URL
            prefix (``/2016-08-15/proxy/<service>/<function>`` on FC's default address).
        limits: FC's size limits to enforce; :class:`Limits` defaults are FC's own.
        scheme: the URL scheme the app sees: ``"auto"`` is what FC reports on FC 2.0
            (``http``, even behind an HTTPS custom domain) and ``https`` on FC 3.0, whose event
            does not say; ``"https"`` or ``"http"`` fix it.
        forwarded: how many proxies in front of FC to trust. ``0`` (default) ignores
            ``X-Forwarded-Proto`` and ``X-Forwarded-For``, which any client can send; with
            ``n``, the scheme and client address come from the ``n``-th value from the right.
        host: the host name the app sees when FC passes no ``Host`` header (FC 2.0 on a
            custom domain). Without it: FC's default domain where FC tells it (FC 3.0's
            ``domainName``; FC 2.0's default address, from the context), else no host.
        timeout: seconds a request may run before the bridge cancels it and answers 504.
            ``"auto"`` (default) is the function's timeout from FC's context less a margin
            (a fifth of it, at most 3 s), so the answer and the log record saying where the
            app was stuck get out before FC cuts the invocation off; ``None`` disables it.
        task_timeout: how many seconds a request waits, after the app has returned, for the
            asyncio tasks it started (``asyncio.create_task`` in an endpoint), and after the
            response is complete for the app to return (a background task): FC may freeze
            the instance as soon as it has the response. ``0`` does not wait.
        on_event: ``(event, context) -> result`` (or a coroutine function) for events from
            other FC 3.0 triggers (timer, OSS, MNS, ...); it gets the event exactly as FC
            passed it. Without it such events raise :class:`UnsupportedEventError`.
        set_cookie: how an FC 3.0 response dict carries several ``Set-Cookie`` values, which
            a ``{name: value}`` dict cannot hold as such: ``"case"`` (default) gives each its
            own key, spelled with a different letter case, which HTTP treats as the same
            header (up to 512 of them); ``"join"`` joins them with ``", "``, which browsers
            cannot split reliably.
        loop: the :class:`SharedLoop` to run on (default: the process's one).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifespan: LifespanMode = "auto",
        root_path: str | None = None,
        limits: Limits | None = None,
        scheme: str = "auto",
        forwarded: int = 0,
        host: str | None = None,
        timeout: Timeout = "auto",
        task_timeout: float = 10.0,
        on_event: EventHandler | None = None,
        set_cookie: str = "case",
        loop: SharedLoop | None = None,
    ) -> None:
        if not callable(app):
            raise config_error(f"app must be an ASGI application (a callable), got {app!r}.")
        self.app = app
        self.options = Options(
            lifespan=lifespan,
            root_path=root_path,
            limits=limits,
            scheme=scheme,
            forwarded=forwarded,
            host=host,
            timeout=timeout,
            task_timeout=task_timeout,
            on_event=on_event,
            set_cookie=set_cookie,
        )
        self._loop = loop or shared_loop
        self._lifespan = Lifespan(app, self.options.lifespan)
        self._http = HTTPHandler(app, self._lifespan, self.options)

    @property
    def limits(self) -> Limits:
        return self.options.limits

    def __repr__(self) -> str:
        options = self.options
        return (
            f"{type(self).__name__}(app={self.app!r}, lifespan={options.lifespan!r}, "
            f"root_path={options.root_path!r}, scheme={options.scheme!r})"
        )

    def __call__(self, first: Any, second: Any) -> Any:
        """FC's entry point: a WSGI call (FC 2.0) or an event call (FC 3.0), told apart by the
        arguments: an environ is a dict and start_response a callable (FC's context is not)."""
        if isinstance(first, dict) and callable(second):
            return self.wsgi(first, second)
        return self.event(first, second)

    def wsgi(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        """FC 2.0's HTTP handler: serve one request given as a WSGI environ."""
        global _wsgi
        if _wsgi is None:
            from . import _wsgi
        context = environ.get("fc.context")
        rid = request_id(context, environ.get("HTTP_X_FC_REQUEST_ID"))
        fc = "fc.request_uri" in environ or "fc.context" in environ  # is_fc, inlined
        try:
            parsed = _wsgi.parse_environ(environ, self.options)
            if isinstance(parsed, Rejection):
                response = _rejected(parsed, rid)
            else:
                scope, body = parsed
                policy = BUILTIN if fc else PLAIN
                response = self._http.buffered(self._loop, scope, body, rid, context, policy)
        except Exception as exc:
            response = _failed(exc, rid)
        # Outside the try: a PEP 3333 server may re-raise the app's exception from
        # start_response (exc_info), as it is entitled to.
        return _wsgi.write_response(response, start_response, fc)

    def event(self, event: object, context: ContextLike) -> Any:
        """FC 3.0's handler: answer an HTTP trigger's event with FC's response dict, and hand
        events of other triggers to ``on_event``."""
        global _event
        if _event is None:
            from . import _event
        event_response = _event.event_response
        loaded = _event.load_event(event)
        if loaded is None or not _event.is_http_event(loaded):
            if self.options.on_event is not None:
                return self._other_event(event, context)
            if loaded is None:
                got = _event.describe(event)
                rejection = bad_request(f"The event is not valid JSON: got {got}.")
                return event_response(_rejected(rejection, request_id(context)), "case")
            from ._errors import UnsupportedEventError  # imported when raised (see _options)

            raise UnsupportedEventError(
                f"fc_bridge got an event that is not an HTTP request ({_event.describe(event)}); "
                "pass bridge(app, on_event=...) to handle events of other triggers."
            )
        rid = request_id(context, loaded["requestContext"].get("requestId"))
        set_cookie = self.options.set_cookie
        try:
            parsed = _event.parse_event(loaded, context, self.options)
            if isinstance(parsed, Rejection):
                response = _rejected(parsed, rid)
            else:
                scope, body = parsed
                response = self._http.buffered(self._loop, scope, body, rid, context, BUILTIN)
            answer = event_response(response, set_cookie)
            if isinstance(answer, Rejection):
                answer = event_response(_rejected(answer, rid), set_cookie)
        except Exception as exc:
            answer = event_response(_failed(exc, rid), set_cookie)
        return answer

    def _other_event(self, event: object, context: ContextLike) -> Any:
        handler = self.options.on_event
        assert handler is not None
        result = handler(event, context)
        if isinstance(result, Awaitable):  # a coroutine function, or an object with async __call__
            return self._loop.run(_awaited(result))
        return result

    def initializer(self, context: ContextLike | None = None) -> None:
        """FC's initializer hook: run the app's lifespan startup, once per instance.

        Raises :class:`LifespanError` if startup fails or does not complete within the hook's
        time (the function's timeout, else 300 s), so FC reports the failed initializer and
        retries it on a new instance instead of serving a half-started app.
        """
        failure = self._loop.run(self.run_hook("initializer", context))
        if failure is not None:
            from ._errors import LifespanError  # imported when raised (see _options)

            raise LifespanError(f"ASGI {failure}")

    def pre_stop(self, context: ContextLike | None = None) -> None:
        """FC's pre_stop hook: run the app's lifespan shutdown (at most 90 s, or the function's
        timeout). Raises LifespanError if it fails."""
        failure = self._loop.run(self.run_hook("pre_stop", context))
        if failure is not None:
            from ._errors import LifespanError  # imported when raised (see _options)

            raise LifespanError(f"ASGI {failure}")

    def pre_freeze(self, context: ContextLike | None = None) -> None:
        """FC's pre_freeze hook: give tasks earlier requests left running up to
        ``task_timeout`` seconds to finish before FC freezes the instance."""
        self._loop.run(self.run_hook("pre_freeze", context))

    async def run_hook(self, name: str, context: ContextLike | None = None) -> str | None:
        """Run FC's lifecycle hook ``name`` (``"initializer"``, ``"pre_stop"`` or
        ``"pre_freeze"``) on the running loop; the lifespan failure it caused, if any.

        The hooks above run it on the shared loop; a web function's hook endpoints await it.
        """
        lifespan = self._lifespan
        if name == "initializer":
            timeout = hook_timeout(context, INITIALIZER_TIMEOUT)
            await lifespan.within("startup", timeout, context)
            return lifespan.failure
        if name == "pre_stop":
            before = lifespan.failure
            await lifespan.within("shutdown", hook_timeout(context, PRE_STOP_TIMEOUT))
            return lifespan.failure if lifespan.failure != before else None
        await self._http.settle_leftovers(request_id(context))
        return None


bridge = Bridge
"""``handler = bridge(app)``: the spelling used in deployed code; the same as :class:`Bridge`."""


def _rejected(rejection: Rejection, rid: str) -> Response:
    rejection.log(rid)
    return Response.rejection(rejection)


def _failed(exc: Exception, rid: str) -> Response:
    # An exception escaping the handler becomes FC's opaque 502; a 500 with a log record that
    # names the request is more use to everyone.
    logger.error("fc_bridge failed to serve the request [request_id=%s]", rid, exc_info=exc)
    return Response.internal_error()


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
