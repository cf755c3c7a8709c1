"""The apps every benchmark serves: a tiny Starlette app and a FastAPI JSON route.

Nothing here imports fc_bridge, so floors built on these apps carry no bridge code.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


async def tiny(request: Request) -> Response:
    return PlainTextResponse("hello")


async def upload(request: Request) -> Response:
    return PlainTextResponse(str(len(await request.body())))


async def download(request: Request) -> Response:
    chunk = b"x" * (64 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8 * 16):
            yield chunk

    return StreamingResponse(chunks(), media_type="application/octet-stream")


BINARY = bytes(range(256)) * 4096  # 1 MiB


async def binary(request: Request) -> Response:
    return Response(BINARY, media_type="application/octet-stream")


async def slow(request: Request) -> Response:
    await asyncio.sleep(0.005)
    return PlainTextResponse("slept")


starlette_app = Starlette(
    routes=[
        Route("/tiny", tiny),
        Route("/upload", upload, methods=["POST"]),
        Route("/download", download),
        Route("/slow", slow),
        Route("/binary", binary),
    ]
)


def make_fastapi_app() -> Any:
    """A FastAPI app with one JSON route: path and query parameters, a pydantic model back.

    Made on demand: importing FastAPI and pydantic costs more than a benchmark of the tiny app.
    """
    from fastapi import FastAPI
    from pydantic import BaseModel

    app = FastAPI()

    class Item(BaseModel):
        id: int
        name: str
        tags: list[str]
        price: float

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: str = "", limit: int = 10) -> Item:
        return Item(id=item_id, name=q or "thing", tags=["a", "b"] * limit, price=9.5)

    return app
