"""The reference: an app behaves through the bridge as it does under plain uvicorn.

Plain uvicorn is given FC's URL prefix as its root_path (what a proxy that strips the prefix
would need); the bridge is reached the way FC reaches it. The same requests go to both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from examples.fastapi_app import main
from fc_bridge import Bridge
from fc_bridge._types import Receive, Scope, Send
from fc_bridge.local import asgi_app

from .conftest import PREFIX, plain_lifespan, running_server

scopes: list[dict[str, Any]] = []


async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await plain_lifespan(receive, send)
        return
    message = await receive()
    scopes.append({**scope, "body": message["body"]})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    with running_server(recorder, root_path=PREFIX) as plain:
        with running_server(asgi_app(Bridge(recorder), "fc2", prefix=PREFIX)) as bridged:
            yield plain, bridged + PREFIX


REQUESTS = [
    ("GET", "/", {}, b""),
    ("GET", "/items/caf%C3%A9/%E6%9D%B1?q=a%20b&q=%C3%A9&empty=", {"X-Custom": "1"}, b""),
    ("POST", "/upload", {"Content-Type": "application/json"}, b'{"a": [1, 2]}'),
    (
        "PUT",
        "/a%2Fb",
        {"Cookie": "a=1; b=2", "Content-Type": "image/png", "Accept-Language": "zh-CN"},
        bytes(range(256)),
    ),
    ("DELETE", "/x/", {"Authorization": "Bearer t"}, b""),
]


@pytest.mark.parametrize(("method", "path", "headers", "body"), REQUESTS)
def test_the_app_sees_the_same_request(
    servers: tuple[str, str], method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    scopes.clear()
    for base in servers:
        httpx.request(method, base + path, headers=headers, content=body)
    plain, bridged = scopes
    same = ("type", "method", "path", "raw_path", "root_path", "query_string", "scheme", "body")
    assert {k: bridged[k] for k in same} == {k: plain[k] for k in same}
    assert bridged["http_version"] == plain["http_version"]
    # FC adds headers of its own (x-fc-*): everything the client sent arrives unchanged
    # (but Host, which names each server's own port).
    sent = sorted(h for h in plain["headers"] if h[0] != b"host")
    got = sorted(h for h in bridged["headers"] if h[0] != b"host" and not h[0].startswith(b"x-fc-"))
    assert got == sent
    assert bridged["client"][0] == plain["client"][0] == "127.0.0.1"


@pytest.fixture(scope="module")
def example() -> Iterator[tuple[str, str]]:
    with running_server(main.app, root_path=PREFIX) as plain:
        with running_server(asgi_app(Bridge(main.app), "fc2", prefix=PREFIX)) as bridged:
            yield plain, bridged + PREFIX


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/items/3?q=x&limit=2", {}),
        ("GET", "/items/nope", {}),
        ("POST", "/items", {"json": {"name": "tea", "price": 1}}),
        ("POST", "/items", {"json": {"name": "", "price": -1}}),
        ("POST", "/upload", {"files": {"file": ("a.txt", b"abc")}, "data": {"note": "n"}}),
        ("POST", "/login", {"data": {"username": "ana"}}),
        ("GET", "/me", {"cookies": {"session": "s"}}),
        ("GET", "/go", {}),
        ("GET", "/stream?n=3", {}),
        ("GET", "/openapi.json", {}),
        ("GET", "/nowhere", {}),
        ("HEAD", "/items/3", {}),
    ],
)
def test_fastapi_answers_the_same(
    example: tuple[str, str], method: str, path: str, kwargs: dict[str, Any]
) -> None:
    answers = []
    for base in example:
        response = httpx.request(method, base + path, follow_redirects=False, **kwargs)
        headers = {
            k: v.replace(base.split(PREFIX)[0], "<host>")
            for k, v in response.headers.items()
            if k not in ("date", "server", "x-fc-request-id", "transfer-encoding")
        }
        cookies = response.headers.get_list("set-cookie")
        # FC buffers and sets Content-Length itself where uvicorn may stream a response
        # chunked; where either sends one, it is the body's length.
        length = headers.pop("content-length", None)
        if length is not None and method != "HEAD":
            assert length == str(len(response.content))
        answers.append((response.status_code, response.content, headers, cookies))
    (plain_status, plain_body, plain_headers, plain_cookies) = answers[0]
    (status, body, headers, cookies) = answers[1]
    assert (status, cookies) == (plain_status, plain_cookies)
    if "/items" in path and method == "POST" and status == 201:
        # Each server's app has its own database: the ids may differ, nothing else.
        plain_body, body = plain_body.split(b",", 1)[1], body.split(b",", 1)[1]
    assert body == plain_body
    assert headers == plain_headers
