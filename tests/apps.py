"""Small apps the local front end tests serve (TARGET tests.apps:<name>)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from fc_bridge import Limits, bridge

# Lifespan and background events, one per line, in the file this variable names (if set):
# how a test sees what a server in another process did.
EVENTS = "FC_BRIDGE_TEST_EVENTS"


def record(event: str) -> None:
    path = os.environ.get(EVENTS)
    if path:
        with Path(path).open("a") as file:
            file.write(event + "\n")


class InFlight:
    """Counts requests in the app at once; each waits (briefly) for ``target`` to be reached."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def enter(self, target: int) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        for _ in range(100):  # up to 1 s: long enough for `target` requests to meet
            if self.now >= target:
                break
            await asyncio.sleep(0.01)
        self.now -= 1


in_flight = InFlight()


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    record("startup")
    yield {"opened": "resource"}
    record("shutdown")


async def hello(request: Request) -> Response:
    context = request.scope.get("fc.context")
    return JSONResponse(
        {
            "path": request.url.path,
            "root_path": request.scope.get("root_path"),
            "url": str(request.url),
            "state": request.state.opened,
            "request_id": getattr(context, "request_id", None),
            "function": getattr(getattr(context, "function", None), "name", None),
            "has_credentials": getattr(context, "credentials", None) is not None,
            "headers": sorted(k for k in request.headers if k.startswith("x-fc-")),
        }
    )


async def peer(request: Request) -> Response:
    client = request.client
    return JSONResponse({"client": client.host if client else None, "scheme": request.url.scheme})


async def echo(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(f"{len(body)}")


async def together(request: Request) -> Response:
    await in_flight.enter(int(request.query_params.get("n", "1")))
    return JSONResponse({"peak": in_flight.peak})


async def cookies(request: Request) -> Response:
    response = PlainTextResponse("cookies")
    response.set_cookie("a", "1", expires="Wed, 21 Oct 2037 07:28:00 GMT")
    response.set_cookie("b", "2")
    return response


async def binary(request: Request) -> Response:
    return Response(bytes(range(256)), media_type="application/octet-stream")


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"chunk {i}\n".encode()
            await asyncio.sleep(0.01)

    return StreamingResponse(chunks(), media_type="text/plain")


async def later(request: Request) -> Response:
    record(f"async invocation {request.query_params.get('n')}")
    return PlainTextResponse("done")


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def tooling(request: Request) -> Response:
    """The local tooling the serving process has imported."""
    return JSONResponse(sorted(m for m in sys.modules if m.startswith("fc_bridge.local")))


async def big_headers(request: Request) -> Response:
    # No media type: x-big is the response's only header FC counts (content-length is FC's).
    size = int(request.query_params["size"])
    return Response(b"x", headers={"x-big": "v" * (size - len("x-big"))})


app = Starlette(
    routes=[
        Route("/", hello),
        Route("/hello", hello),
        Route("/peer", peer),
        Route("/echo", echo, methods=["POST"]),
        Route("/together", together),
        Route("/cookies", cookies),
        Route("/binary", binary),
        Route("/stream", stream),
        Route("/later", later, methods=["GET", "POST"]),
        Route("/boom", boom),
        Route("/big-headers", big_headers),
        Route("/tooling", tooling),
    ],
    lifespan=lifespan,
)

handler = bridge(app)
limited = bridge(app, limits=Limits(response_body=10))
not_an_app = 42


@asynccontextmanager
async def failing_lifespan(app: Starlette) -> AsyncIterator[None]:
    raise RuntimeError("database unreachable")
    yield


broken = Starlette(routes=[Route("/", hello)], lifespan=failing_lifespan)


def on_event(event: bytes, context: object) -> dict[str, str]:
    return {"handled": str(json.loads(event)["triggerName"])}


with_events = bridge(app, on_event=on_event)


def wsgi_style(environ: object, start_response: object) -> list[bytes]:
    return [b"not an ASGI app"]


@asynccontextmanager
async def failing_shutdown(app: Starlette) -> AsyncIterator[None]:
    yield
    raise RuntimeError("flush failed")


stops_badly = Starlette(routes=[Route("/", hello)], lifespan=failing_shutdown)
