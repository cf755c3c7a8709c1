"""``bridge(app)``: the one object FC calls, whatever the generation or the hook."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._context import request_id
from ._errors import ConfigError, LifespanError
from ._http import HTTPHandler, Response
from ._lifespan import Lifespan
from ._limits import Limits, Rejection
from ._loop import SharedLoop, shared_loop
from ._urls import check_root_path
from ._wsgi import parse_environ, write_response

if TYPE_CHECKING:
    from ._types import ASGIApp, LifespanMode, StartResponse, WSGIEnviron

logger = logging.getLogger("fc_bridge")

LIFESPAN_MODES = ("auto", "on", "off")
SCHEMES = ("auto", "http", "https")


class Bridge:
    """Serves an ASGI app to Function Compute.

    Deploy it as the function's handler (``handler = bridge(app)``): FC 2.0 calls it as a WSGI
    app, ``handler(environ, start_response)``. ``handler.initializer`` and ``handler.pre_stop``
    are FC's lifecycle hooks; they run the app's lifespan startup and shutdown.

    Options:
        lifespan: ``"auto"`` runs the app's lifespan if it has one; ``"on"`` requires it, so a
            failed startup fails the initializer and every request answers 500; ``"off"``
            never runs it.
        root_path: the ASGI ``root_path`` to use instead of the one detected from FC's URL
            prefix (``/2016-08-15/proxy/<service>/<function>`` on FC's default address).
        limits: FC's size limits to enforce; :class:`Limits` defaults are FC's own.
        scheme: the URL scheme the app sees. ``"auto"`` trusts ``X-Forwarded-Proto`` and falls
            back to what FC reports (always ``http`` on FC 2.0).
        task_timeout: how many seconds a request waits, after the app has returned, for the
            asyncio tasks it started (``asyncio.create_task`` in an endpoint): FC may freeze the
            instance as soon as it has the response. ``0`` does not wait.
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
        self.app = app
        self.lifespan: LifespanMode = lifespan
        self.root_path = check_root_path(root_path)
        self.limits = limits or Limits()
        self.scheme = scheme
        self._loop = loop or shared_loop
        self.task_timeout = task_timeout
        self._lifespan = Lifespan(app, lifespan)
        self._http = HTTPHandler(app, self._lifespan, self.limits, task_timeout)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(app={self.app!r}, lifespan={self.lifespan!r}, "
            f"root_path={self.root_path!r}, scheme={self.scheme!r})"
        )

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        return self.wsgi(environ, start_response)

    def wsgi(self, environ: WSGIEnviron, start_response: StartResponse) -> list[bytes]:
        """FC 2.0's HTTP handler: serve one request given as a WSGI environ."""
        rid = request_id(environ.get("fc.context"), environ.get("HTTP_X_FC_REQUEST_ID"))
        try:
            parsed = parse_environ(
                environ, root_path=self.root_path, scheme=self.scheme, limits=self.limits
            )
            if isinstance(parsed, Rejection):
                logger.info("Answering %d [request_id=%s]: %s", parsed.status, rid, parsed.message)
                response = Response.rejection(parsed)
            else:
                scope, body = parsed
                response = self._loop.run(self._http(scope, body, rid))
        except Exception as exc:
            # An exception escaping the handler becomes FC's opaque 502; a 500 with a log
            # record that names the request is more use to everyone.
            logger.error("fc_bridge failed to serve the request [request_id=%s]", rid, exc_info=exc)
            response = Response.internal_error(exc)
        return write_response(response, start_response, environ)

    def initializer(self, context: Any = None) -> None:
        """FC's initializer hook: run the app's lifespan startup, once per instance.

        Raises :class:`LifespanError` if startup fails, so FC reports the failed initializer
        and retries it on a new instance instead of serving a half-started app.
        """
        self._loop.run(self._lifespan.startup(context))
        if self._lifespan.failure is not None:
            raise LifespanError(f"ASGI {self._lifespan.failure}")

    def pre_stop(self, context: Any = None) -> None:
        """FC's pre_stop hook: run the app's lifespan shutdown. Raises LifespanError if it fails."""
        before = self._lifespan.failure
        self._loop.run(self._lifespan.shutdown())
        if self._lifespan.failure is not None and self._lifespan.failure != before:
            raise LifespanError(f"ASGI {self._lifespan.failure}")


bridge = Bridge
"""``handler = bridge(app)``: the spelling used in deployed code; the same as :class:`Bridge`."""
