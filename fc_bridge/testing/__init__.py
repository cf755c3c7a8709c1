"""Test a function the way FC calls it, from a pytest suite: ``fc_bridge.testing``.

:class:`FCClient` is an ``httpx.Client`` in front of the local front end that ``fc-bridge
serve`` runs (on an event loop in a thread of its own, as a server runs it): each request goes
through FC's checks and limits, is turned into what FC hands the function (an FC 2.0 environ,
an FC 3.0 event, a web function's request) and reaches the deployed handler, and its answer
comes back as FC would send it. Nothing is reimplemented: this is
``fc_bridge.local.asgi_app`` without a server. ``events`` builds FC 3.0's events of other
triggers. Local tooling, like ``fc_bridge.local`` (it needs the ``local`` extra): nothing
deployed imports it.

    from fc_bridge.testing import FCClient
    from main import handler

    def test_items() -> None:
        with FCClient(handler, mode="fc3") as client:  # runs the initializer, then pre_stop
            assert client.get("/items/1").json()["item_id"] == 1
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import httpx

from .._bridge import Bridge
from .._errors import ConfigError
from .._function import FunctionInfo, make_context
from ..local import asgi_app, events
from ..local.frontend import CONTEXT_FIELDS, CONTEXT_HEADER, LocalWeb

__all__ = ["AsyncFCClient", "FCClient", "events"]


def _front_end(
    handler: Any, mode: str, prefix: str | None, function: FunctionInfo | None, concurrency: int
) -> Any:
    bridge = handler if isinstance(handler, Bridge) else Bridge(handler)
    return asgi_app(
        bridge,
        mode,
        prefix=prefix,
        function=function,
        concurrency=concurrency,
        per_request=True,
    )


def _base_url(base_url: str, prefix: str | None) -> str:
    return base_url.rstrip("/") + (prefix or "")


class _Invocations:
    """What both clients share: the context the next requests are made with."""

    def __init__(self) -> None:
        self._context: dict[str, Any] = {}

    def _check(self, values: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(values) - CONTEXT_FIELDS)
        if unknown:
            raise ConfigError(
                f"invocation() sets {', '.join(sorted(CONTEXT_FIELDS))}; got {', '.join(unknown)}."
            )
        return {k: v for k, v in values.items() if v is not None}

    @contextmanager
    def invocation(self, **context: Any) -> Iterator[None]:
        """Make the requests inside this block with this context: ``request_id``, and the
        function's ``timeout``, ``memory``, ``name``, ``region``, ... (see FunctionInfo)."""
        before = self._context
        self._context = {**before, **self._check(context)}
        try:
            yield
        finally:
            self._context = before

    def _with_context(self, headers: Any) -> Any:
        if not self._context:
            return headers
        merged = httpx.Headers(headers)
        merged[CONTEXT_HEADER.decode()] = json.dumps(self._context)
        return merged


class FCClient(httpx.Client, _Invocations):
    """An ``httpx.Client`` whose requests reach ``handler`` as FC's would.

    ``handler`` is what ``bridge(app)`` returned, or an ASGI app (wrapped with default
    options). ``mode``: ``"fc2"`` (FC 2.0's WSGI call), ``"fc3"`` (FC 3.0 events) or
    ``"web"`` (a web function). ``prefix`` serves it under FC's default-address URL prefix
    (``/2016-08-15/proxy/<service>/<function>``); request paths are relative to it.
    ``function`` describes the function in the contexts. Used as a context manager, it runs
    the initializer on entry and pre_stop on exit, as FC does for an instance; without it the
    first request starts the lifespan. An exception in the app is FC's 500, not re-raised.
    """

    def __init__(
        self,
        handler: Any,
        mode: str = "fc2",
        *,
        prefix: str | None = None,
        function: FunctionInfo | None = None,
        concurrency: int = 1,
        base_url: str = "http://testserver",
        **options: Any,
    ) -> None:
        self.front_end = _front_end(handler, mode, prefix, function, concurrency)
        _Invocations.__init__(self)
        self._server = _Server(self.front_end)
        super().__init__(transport=self._server, base_url=_base_url(base_url, prefix), **options)

    def __enter__(self) -> FCClient:
        super().__enter__()
        try:
            self._server.start_lifespan()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        try:
            self._server.stop_lifespan()
        finally:
            super().__exit__(exc_type, exc, traceback)

    def request(self, method: str, url: Any, **kwargs: Any) -> httpx.Response:
        kwargs["headers"] = self._with_context(kwargs.get("headers"))
        return super().request(method, url, **kwargs)


class _Server(httpx.BaseTransport):
    """Runs the front end on an event loop in a thread of its own, as a server does."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.asgi = httpx.ASGITransport(app=app)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.lifespan: _Lifespan | None = None

    def _run(self, coro: Any) -> Any:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            self.thread = threading.Thread(
                target=self.loop.run_forever, name="fc-bridge-testing", daemon=True
            )
            self.thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def exchange() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self.asgi.handle_async_request(forwarded)
            content = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            return response.status_code, response.headers.raw, content

        status, headers, content = self._run(exchange())
        return httpx.Response(status, headers=headers, content=content, request=request)

    def start_lifespan(self) -> None:
        self.lifespan = _Lifespan(self.app)
        self._run(self.lifespan.start())

    def stop_lifespan(self) -> None:
        assert self.lifespan is not None  # __exit__ follows a successful __enter__
        lifespan, self.lifespan = self.lifespan, None
        self._run(lifespan.stop())

    def close(self) -> None:
        loop, self.loop = self.loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            assert self.thread is not None
            self.thread.join(10)
            loop.close()


class AsyncFCClient(httpx.AsyncClient, _Invocations):
    """:class:`FCClient` for async tests: an ``httpx.AsyncClient``; ``async with`` runs the
    initializer and pre_stop."""

    def __init__(
        self,
        handler: Any,
        mode: str = "fc2",
        *,
        prefix: str | None = None,
        function: FunctionInfo | None = None,
        concurrency: int = 1,
        base_url: str = "http://testserver",
        **options: Any,
    ) -> None:
        self.front_end = _front_end(handler, mode, prefix, function, concurrency)
        _Invocations.__init__(self)
        super().__init__(
            transport=httpx.ASGITransport(app=self.front_end),
            base_url=_base_url(base_url, prefix),
            **options,
        )
        self._lifespan: _Lifespan | None = None

    async def __aenter__(self) -> AsyncFCClient:
        await super().__aenter__()
        self._lifespan = _Lifespan(self.front_end)
        try:
            await self._lifespan.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        try:
            assert self._lifespan is not None  # __aexit__ follows a successful __aenter__
            await self._lifespan.stop()
        finally:
            await super().__aexit__(exc_type, exc, traceback)

    async def request(self, method: str, url: Any, **kwargs: Any) -> httpx.Response:
        kwargs["headers"] = self._with_context(kwargs.get("headers"))
        return await super().request(method, url, **kwargs)


class _Lifespan:
    """Drives an ASGI app's lifespan from the outside, as a server does."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        await self.app(scope, self.inbox.get, self.outbox.put)

    async def _step(self, kind: str) -> None:
        await self.inbox.put({"type": f"lifespan.{kind}"})
        answer = await self.outbox.get()
        if answer["type"] != f"lifespan.{kind}.complete":
            raise RuntimeError(f"The function's {kind} failed: {answer.get('message', '')}")

    async def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        try:
            await self._step("startup")
            if isinstance(self.app, LocalWeb):  # FC's POST /initialize, as an instance starts
                context = make_context(self.app.function, 2)
                failure = await self.app.bridge.run_hook("initializer", context)
                if failure is not None:
                    raise RuntimeError(f"The function's initializer failed: ASGI {failure}")
        except BaseException:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            raise

    async def stop(self) -> None:
        await self._step("shutdown")
        assert self.task is not None
        await self.task
