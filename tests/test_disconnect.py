"""http.disconnect per the ASGI spec: only once the response is complete."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse

from fc_bridge import Bridge
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Message, Receive, Scope, Send

from .conftest import fc_call


def test_is_disconnected_is_false_during_a_normal_request(loop: SharedLoop) -> None:
    app = FastAPI()

    @app.post("/")
    async def endpoint(request: Request) -> dict[str, Any]:
        # Starlette drops a message is_disconnected() receives, so (under uvicorn as here)
        # it is only asked once the body has been read.
        body = await request.body()
        checks = [await request.is_disconnected() for _ in range(3)]
        return {"checks": checks, "body": body.decode()}

    response = fc_call(Bridge(app, loop=loop), "POST", "/", [("Content-Type", "text/plain")], b"hi")
    assert response.body == b'{"checks":[false,false,false],"body":"hi"}'


def test_receive_after_the_body_waits_for_the_response_to_complete(loop: SharedLoop) -> None:
    timeline: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        timeline.append(f"{first['type']} more_body={first['more_body']}")

        async def listen() -> Message:
            message = await receive()
            timeline.append(message["type"])
            return message

        listener = asyncio.get_running_loop().create_task(listen())
        await asyncio.sleep(0.01)
        timeline.append("sending")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await asyncio.sleep(0.01)
        timeline.append("completing")
        await send({"type": "http.response.body", "body": b"b"})
        await listener
        timeline.append((await receive())["type"])  # and every later call

    response = fc_call(Bridge(app, lifespan="off", loop=loop))
    assert response.body == b"ab"
    assert timeline == [
        "http.request more_body=False",
        "sending",
        "completing",
        "http.disconnect",
        "http.disconnect",
    ]


def test_a_listener_left_waiting_is_released_when_the_app_returns(loop: SharedLoop) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()

        async def listen() -> None:
            seen.append((await receive())["type"])

        asyncio.get_running_loop().create_task(listen())
        await asyncio.sleep(0)
        # Returns without a response: the exchange is over all the same.

    assert fc_call(Bridge(app, lifespan="off", loop=loop)).status == 500
    assert fc_call(Bridge(app, lifespan="off", loop=loop)).status == 500
    assert seen == ["http.disconnect", "http.disconnect"]


def test_background_task_sees_the_disconnect_after_the_response(loop: SharedLoop) -> None:
    seen: list[bool] = []

    async def endpoint(request: Request) -> JSONResponse:
        async def check() -> None:
            seen.append(await request.is_disconnected())

        return JSONResponse({}, background=BackgroundTask(check))

    app = FastAPI()
    app.add_api_route("/", endpoint)
    assert fc_call(Bridge(app, loop=loop)).status == 200
    assert seen == [True]
