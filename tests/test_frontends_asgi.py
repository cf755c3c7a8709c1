"""The front ends driven as plain ASGI apps: edges a real server makes hard to reach."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fc_bridge import Bridge
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Message, Receive, Scope, Send
from fc_bridge.local import asgi_app
from fc_bridge.local.frontend import asgi_request

from . import apps


def http_scope(path: str = "/", method: str = "GET") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"local")],
        "client": ("127.0.0.1", 1234),
    }


def talk(app: Any, scope: dict[str, Any], incoming: list[Message]) -> list[Message]:
    """Run ``app`` on ``scope`` with these messages to receive; returns what it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(3600)  # nothing more will come
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        await app(scope, receive, send)

    asyncio.run(main())
    return sent


@pytest.mark.parametrize("mode", ["fc2", "web"])
def test_a_client_gone_mid_upload_invokes_nothing(loop: SharedLoop, mode: str) -> None:
    front = asgi_app(Bridge(apps.app, lifespan="off", loop=loop), mode)
    incoming: list[Message] = [
        {"type": "http.request", "body": b"part", "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert talk(front, http_scope("/echo", "POST"), incoming) == []


def test_shutdown_waits_for_async_invocations_and_reports_a_failed_pre_stop(
    loop: SharedLoop,
) -> None:
    front = asgi_app(Bridge(apps.stops_badly, loop=loop), "fc2")
    done: list[str] = []

    def slow_invocation() -> None:
        import time

        time.sleep(0.05)
        done.append("async invocation")

    async def lifespan() -> list[Message]:
        sent: list[Message] = []
        incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> Message:
            message = incoming.pop(0)
            if message["type"] == "lifespan.shutdown":
                future = asyncio.get_running_loop().run_in_executor(None, slow_invocation)
                front._background.add(future)
            return message

        async def send(message: Message) -> None:
            sent.append(message)

        await front({"type": "lifespan"}, receive, send)
        return sent

    sent = asyncio.run(lifespan())
    assert done == ["async invocation"]  # finished before pre_stop ran
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.failed"]
    assert "flush failed" in sent[1]["message"]


def test_web_mode_passes_websockets_to_the_app(loop: SharedLoop) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])
        await send({"type": "websocket.close", "code": 1000})

    sent = talk(asgi_app(Bridge(app, loop=loop), "web"), {"type": "websocket"}, [])
    assert (seen, sent) == (["websocket"], [{"type": "websocket.close", "code": 1000}])


def test_web_mode_exception_after_the_response_started_sends_nothing_more(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise RuntimeError("midway")

    sent = talk(
        asgi_app(Bridge(app, lifespan="off", loop=loop), "web"),
        http_scope(),
        [{"type": "http.request", "body": b"", "more_body": False}],
    )
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert caplog.records[-1].getMessage().startswith("Exception in ASGI application")


def test_in_process_requests_wait_for_the_response_before_disconnecting() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()

        async def listen() -> None:
            assert (await receive())["type"] == "http.disconnect"

        listener = asyncio.get_running_loop().create_task(listen())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b"y"})
        await listener

    answer = asyncio.run(asgi_request(app, "get", "/p?q=1", [("H", "v")], b""))
    assert answer == (200, [(b"a", b"1")], b"xy")


def test_web_mode_exception_before_the_response_is_a_500(loop: SharedLoop) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("before anything")

    request: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]
    sent = talk(asgi_app(Bridge(app, lifespan="off", loop=loop), "web"), http_scope(), request)
    assert sent[0]["status"] == 500
    assert sent[1]["body"] == b"Internal Server Error"
