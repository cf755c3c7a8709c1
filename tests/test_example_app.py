"""The FastAPI example app, deployed as FC 2.0 would call it, under FC's default-address prefix."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator

import pytest

from examples.fastapi_app import main
from fc_bridge._emulator import RuntimeResponse

from .conftest import PREFIX, FCContext, fc_call

HOST = [("Host", "123456.cn-hangzhou.fc.aliyuncs.com")]


@pytest.fixture(scope="module", autouse=True)
def _instance() -> Iterator[None]:
    main.initializer(FCContext(request_id="init"))
    yield
    main.pre_stop(FCContext(request_id="stop"))


def call(
    method: str, path: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> RuntimeResponse:
    return fc_call(main.handler, method, PREFIX + path, HOST + (headers or []), body)


def test_json_route_with_path_and_query_params() -> None:
    response = call("GET", "/items/42?q=caf%C3%A9&limit=5")
    assert (response.status, json.loads(response.body)) == (
        200,
        {"item_id": 42, "q": "café", "limit": 5},
    )


def test_validation_error_is_fastapis_422() -> None:
    response = call("GET", "/items/not-a-number")
    assert response.status == 422
    assert json.loads(response.body)["detail"][0]["loc"] == ["path", "item_id"]


def test_post_json_uses_the_database_the_lifespan_opened() -> None:
    created = call(
        "POST", "/items", [("Content-Type", "application/json")], b'{"name": "tea", "price": 3.5}'
    )
    assert created.status == 201
    item = json.loads(created.body)
    assert item["name"] == "tea"
    listed = json.loads(call("GET", "/items").body)
    assert {"id": item["id"], "name": "tea", "price": 3.5} in listed


def test_multipart_upload() -> None:
    boundary = "----fcbridge"
    payload = bytes(range(256)) * 100
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = [("Content-Type", f"multipart/form-data; boundary={boundary}")]
    response = call("POST", "/upload", headers, body)
    assert json.loads(response.body) == {
        "filename": "b.bin",
        "content_type": "application/octet-stream",
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "note": "hello",
    }


def test_login_sets_two_cookies_and_redirects_under_the_prefix() -> None:
    form = [("Content-Type", "application/x-www-form-urlencoded")]
    response = call("POST", "/login", form, b"username=ana")
    assert response.status == 303
    assert response.header("location") == f"{PREFIX}/me"
    cookies = response.headers["set-cookie"]
    assert [c.split(";")[0] for c in cookies] == ["session=user-ana", "theme=dark"]
    me = call("GET", "/me", [("Cookie", "session=user-ana; theme=dark")])
    assert json.loads(me.body) == {"session": "user-ana"}
    assert call("GET", "/me").status == 401


def test_url_for_redirect_keeps_the_prefix() -> None:
    response = call("GET", "/go")
    assert response.status == 307
    assert response.header("location") == (
        f"http://123456.cn-hangzhou.fc.aliyuncs.com{PREFIX}/items/1"
    )


def test_docs_page_loads_openapi_and_assets_through_the_prefix() -> None:
    page = call("GET", "/docs").body.decode()
    assert f"url: '{PREFIX}/openapi.json'" in page
    for asset in re.findall(r'(?:href|src)="(http[^"]+/static/swagger/[^"]+)"', page):
        path = asset.split(PREFIX, 1)[1]
        assert call("GET", path).status == 200, asset
    spec = json.loads(call("GET", "/openapi.json").body)
    assert "/items/{item_id}" in spec["paths"]


def test_streaming_route() -> None:
    response = call("GET", "/stream?n=4")
    assert (response.status, response.body) == (200, b"line 0\nline 1\nline 2\nline 3\n")


def test_whoami_reports_the_context_without_its_secrets() -> None:
    response = fc_call(main.handler, "GET", "/whoami", HOST, context=FCContext(request_id="abc"))
    assert json.loads(response.body) == {
        "request_id": "abc",
        "function": "fn",
        "region": "cn-hangzhou",
        "has_credentials": True,
        "root_path": "",
    }
