"""The FastAPI example as FC calls it: FC 2.0 (WSGI, with the URL prefix) and FC 3.0 (events)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from examples.fastapi_app import main
from fc_bridge.local.emulator import Invocation, RuntimeResponse, call_event, http_event

from .conftest import PREFIX, FCContext, fc_call


@dataclass
class Generation:
    """How one FC generation reaches the example: the URL prefix, the host, the call."""

    name: str
    prefix: str
    host: str
    scheme: str

    def call(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        context: Any = None,
    ) -> RuntimeResponse:
        all_headers = [("Host", self.host), *(headers or [])]
        if self.name == "fc2":
            return fc_call(
                main.handler, method, self.prefix + path, all_headers, body, context=context
            )
        event = http_event(Invocation(method, path, all_headers, body), domain=self.host)
        return call_event(main.handler, event, context or FCContext())


FC2 = Generation("fc2", PREFIX, "123456.cn-hangzhou.fc.aliyuncs.com", "http")
FC3 = Generation("fc3", "", "abc.cn-hangzhou.fcapp.run", "https")


@pytest.fixture(params=[FC2, FC3], ids=lambda g: g.name)
def fc(request: pytest.FixtureRequest) -> Generation:
    generation: Generation = request.param
    return generation


@pytest.fixture(scope="module", autouse=True)
def _instance() -> Iterator[None]:
    main.initializer(FCContext(request_id="init"))
    yield
    main.pre_stop(FCContext(request_id="stop"))


def test_json_route_with_path_and_query_params(fc: Generation) -> None:
    response = fc.call("GET", "/items/42?q=caf%C3%A9&limit=5")
    assert (response.status, json.loads(response.body)) == (
        200,
        {"item_id": 42, "q": "café", "limit": 5},
    )


def test_validation_error_is_fastapis_422(fc: Generation) -> None:
    response = fc.call("GET", "/items/not-a-number")
    assert response.status == 422
    assert json.loads(response.body)["detail"][0]["loc"] == ["path", "item_id"]


def test_post_json_uses_the_database_the_lifespan_opened(fc: Generation) -> None:
    json_header = [("Content-Type", "application/json")]
    created = fc.call("POST", "/items", json_header, b'{"name": "tea", "price": 3.5}')
    assert created.status == 201
    item = json.loads(created.body)
    assert item["name"] == "tea"
    listed = json.loads(fc.call("GET", "/items").body)
    assert {"id": item["id"], "name": "tea", "price": 3.5} in listed


def test_multipart_upload(fc: Generation) -> None:
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
    response = fc.call("POST", "/upload", headers, body)
    assert json.loads(response.body) == {
        "filename": "b.bin",
        "content_type": "application/octet-stream",
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "note": "hello",
    }


def test_login_sets_two_cookies_and_redirects_under_the_prefix(fc: Generation) -> None:
    form = [("Content-Type", "application/x-www-form-urlencoded")]
    response = fc.call("POST", "/login", form, b"username=ana")
    assert response.status == 303
    assert response.header("location") == f"{fc.prefix}/me"
    cookies = next(v for k, v in response.headers.items() if k.lower() == "set-cookie")
    assert [c.split(";")[0] for c in cookies] == ["session=user-ana", "theme=dark"]
    me = fc.call("GET", "/me", [("Cookie", "session=user-ana; theme=dark")])
    assert json.loads(me.body) == {"session": "user-ana"}
    assert fc.call("GET", "/me").status == 401


def test_url_for_redirect_keeps_the_prefix(fc: Generation) -> None:
    response = fc.call("GET", "/go")
    assert response.status == 307
    assert response.header("location") == f"{fc.scheme}://{fc.host}{fc.prefix}/items/1"


def test_docs_page_loads_openapi_and_assets_through_the_prefix(fc: Generation) -> None:
    page = fc.call("GET", "/docs").body.decode()
    assert f"url: '{fc.prefix}/openapi.json'" in page
    assets = re.findall(r'(?:href|src)="([^"]*/static-offline-docs/[^"]+)"', page)
    assert len(assets) == 3  # script, style sheet, favicon: none from a CDN
    for asset in assets:
        assert asset.startswith(f"{fc.prefix}/static-offline-docs/")
        assert fc.call("GET", asset.removeprefix(fc.prefix)).status == 200, asset
    spec = json.loads(fc.call("GET", "/openapi.json").body)
    assert "/items/{item_id}" in spec["paths"]


def test_streaming_route(fc: Generation) -> None:
    response = fc.call("GET", "/stream?n=4")
    assert (response.status, response.body) == (200, b"line 0\nline 1\nline 2\nline 3\n")


def test_whoami_reports_the_context_without_its_secrets(fc: Generation) -> None:
    response = fc.call("GET", "/whoami", context=FCContext(request_id="abc"))
    assert json.loads(response.body) == {
        "request_id": "abc",
        "function": "fn",
        "region": "cn-hangzhou",
        "has_credentials": True,
        "root_path": fc.prefix,
    }


def test_the_cookie_check_sets_three_cookies_that_each_hold_a_comma(fc: Generation) -> None:
    response = fc.call("GET", "/cookies/set")
    assert response.status == 303
    cookies = next(v for k, v in response.headers.items() if k.lower() == "set-cookie")
    assert [c.split(";")[0] for c in cookies] == ["fcb_one=1", "fcb_two=1", "fcb_three=1"]
    assert all("expires=" in c.lower() and "," in c for c in cookies)
    assert response.header("location") == fc.prefix + "/cookies/check"
    sent = "; ".join(c.split(";")[0] for c in cookies)
    check = fc.call("GET", "/cookies/check", [("Cookie", sent)])
    assert json.loads(check.body) == {
        "received": ["fcb_one", "fcb_two", "fcb_three"],
        "all_arrived": True,
    }
    partial = fc.call("GET", "/cookies/check", [("Cookie", "fcb_one=1")])
    assert json.loads(partial.body)["all_arrived"] is False
