"""The local front end on a real uvicorn server, over real HTTP on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from fc_bridge import Bridge, ConfigError, Limits, WebFunction
from fc_bridge._loop import SharedLoop
from fc_bridge.local import asgi_app

from . import apps
from .conftest import PREFIX, running_server


@pytest.fixture(autouse=True)
def _events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "events"
    monkeypatch.setenv(apps.EVENTS, str(path))
    return path


def events(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def fc2(loop: SharedLoop) -> Iterator[str]:
    with running_server(asgi_app(Bridge(apps.app, loop=loop), "fc2", prefix=PREFIX)) as url:
        yield url + PREFIX


def headers_size(request: httpx.Request) -> int:
    return sum(len(name) + len(value) for name, value in request.headers.raw)


def padded(client: httpx.Client, url: str, total: int) -> httpx.Response:
    """GET ``url`` with request headers of exactly ``total`` bytes, names and values."""
    probe = client.build_request("GET", url, headers={"x-pad": ""})
    pad = "a" * (total - headers_size(probe))
    request = client.build_request("GET", url, headers={"x-pad": pad})
    assert headers_size(request) == total
    return client.send(request)


def test_fc2_serves_the_app_under_the_prefix_with_a_context(fc2: str, _events: Path) -> None:
    response = httpx.get(fc2 + "/hello")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "path": f"{PREFIX}/hello",
        "root_path": PREFIX,
        "url": f"{fc2}/hello",
        "state": "resource",
        "request_id": response.headers["x-fc-request-id"],
        "function": "fc-bridge-local",
        "has_credentials": False,
        "headers": ["x-fc-function-handler"],
    }
    assert events(_events) == ["startup"]  # the initializer ran when the server started


def test_fc2_answers_fcs_404_outside_the_prefix(fc2: str) -> None:
    response = httpx.get(fc2.replace(PREFIX, "") + "/hello")
    assert response.status_code == 404
    assert response.headers["x-fc-error-type"] == "FcCommonError"
    assert response.json() == {
        "ErrorCode": "PathNotFound",
        "ErrorMessage": f"The path '/hello' is not under the function's URL {PREFIX}/.",
    }


def test_fc2_request_header_limit_boundary(fc2: str) -> None:
    with httpx.Client() as client:
        assert padded(client, fc2 + "/", 8192).status_code == 200
        over = padded(client, fc2 + "/", 8193)
    assert over.status_code == 400
    assert over.json() == {
        "ErrorCode": "InvalidArgument",
        "ErrorMessage": (
            "The size of the request headers is 8193 bytes, over FC's limit of 8192 bytes."
        ),
    }


def test_fc2_request_target_boundary(fc2: str) -> None:
    base = fc2.split(":", 2)[2].split("/", 1)[1]  # the path part of the URL, without "/"
    fill = 4096 - len("/" + base + "/hello?q=")
    assert httpx.get(f"{fc2}/hello?q={'x' * fill}").status_code == 200
    assert httpx.get(f"{fc2}/hello?q={'x' * (fill + 1)}").status_code == 400


def test_fc2_body_limits_stop_reading_at_the_boundary(loop: SharedLoop) -> None:
    limits = Limits(request_body=1000, async_request_body=100)
    with running_server(asgi_app(Bridge(apps.app, limits=limits, loop=loop), "fc2")) as url:
        assert httpx.post(url + "/echo", content=b"x" * 1000).text == "1000"
        over = httpx.post(url + "/echo", content=b"x" * 1001)
        assert (over.status_code, over.json()["ErrorCode"]) == (400, "InvalidArgument")
        async_header = {"X-Fc-Invocation-Type": "Async"}
        assert (
            httpx.post(url + "/later", content=b"x" * 100, headers=async_header).status_code == 202
        )
        assert (
            httpx.post(url + "/later", content=b"x" * 101, headers=async_header).status_code == 400
        )


def test_fc2_response_header_limit_is_a_502(fc2: str) -> None:
    assert httpx.get(fc2 + "/big-headers?size=8192").status_code == 200
    response = httpx.get(fc2 + "/big-headers?size=8193")
    assert response.status_code == 502
    assert response.json()["ErrorCode"] == "BadResponse"


def test_fc2_app_exception_is_a_500(fc2: str) -> None:
    response = httpx.get(fc2 + "/boom")
    assert (response.status_code, response.text) == (500, "Internal Server Error")


def test_fc2_async_invocation_is_answered_at_once_and_runs(fc2: str, _events: Path) -> None:
    response = httpx.get(fc2 + "/later?n=1", headers={"X-Fc-Invocation-Type": "Async"})
    assert (response.status_code, response.text) == (202, "")
    assert response.headers["x-fc-request-id"]
    deadline = time.monotonic() + 10
    while "async invocation 1" not in events(_events) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "async invocation 1" in events(_events)


def test_fc2_docs_and_openapi_under_the_prefix() -> None:
    from examples.fastapi_app import main

    # A bridge of its own: stopping this server must not stop the example module's handler.
    with running_server(asgi_app(Bridge(main.app), "fc2", prefix=PREFIX)) as url:
        page = httpx.get(url + PREFIX + "/docs")
        spec = httpx.get(url + PREFIX + "/openapi.json")
    assert page.status_code == 200
    assert f"url: '{PREFIX}/openapi.json'" in page.text
    assert f'src="{PREFIX}/static-offline-docs/swagger-ui-bundle.js"' in page.text
    assert "/items/{item_id}" in spec.json()["paths"]


@pytest.mark.parametrize(("concurrency", "peak"), [(1, 1), (4, 4)])
def test_fc2_concurrency_is_fcs_instance_concurrency(
    loop: SharedLoop, concurrency: int, peak: int
) -> None:
    apps.in_flight = apps.InFlight()
    front = asgi_app(Bridge(apps.app, loop=loop), "fc2", concurrency=concurrency)
    # Four requests at once, each waiting in the app (up to 1 s) until four are in flight:
    # FC's instance concurrency decides how many get in together.
    with running_server(front) as url, httpx.Client(timeout=30) as client:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: client.get(url + "/together?n=4"), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert max(a.json()["peak"] for a in answers) == peak


def test_fc3_serves_the_app_through_events(loop: SharedLoop) -> None:
    with running_server(asgi_app(Bridge(apps.app, loop=loop), "fc3")) as url:
        hello = httpx.get(url + "/hello")
        cookies = httpx.get(url + "/cookies")
        binary = httpx.get(url + "/binary")
        posted = httpx.post(url + "/echo", content=bytes(range(256)))
    assert hello.json()["has_credentials"] is False  # FC 3.0 contexts carry none
    assert hello.json()["url"] == f"https://{url.split('//')[1]}/hello"  # FC 3.0 URLs are https
    assert [c.split(";")[0] for c in cookies.headers.get_list("set-cookie")] == ["a=1", "b=2"]
    assert binary.content == bytes(range(256))
    assert posted.text == "256"


def test_initializer_failure_stops_the_server_loudly(loop: SharedLoop) -> None:
    front = asgi_app(Bridge(apps.broken, lifespan="on", loop=loop), "fc2")
    with pytest.raises(RuntimeError, match=r"uvicorn did not start \(exit code \[3\]\)"):
        with running_server(front):
            pass  # never reached: the server does not start


def test_websockets_are_refused_like_fc(loop: SharedLoop) -> None:
    front = asgi_app(Bridge(apps.app, loop=loop), "fc2")
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "websocket.connect"}

    import asyncio

    async def connect() -> None:
        await front({"type": "websocket"}, receive, send)

    asyncio.run(connect())
    assert sent == [{"type": "websocket.close", "code": 1003}]


def test_local_options_are_validated(loop: SharedLoop) -> None:
    handler = Bridge(apps.app, loop=loop)
    with pytest.raises(ConfigError, match=r'mode must be "fc2", "fc3" or "web", got .fc4.'):
        asgi_app(handler, "fc4")
    with pytest.raises(ConfigError, match="concurrency must be an int from 1 to 100, got 0"):
        asgi_app(handler, "fc2", concurrency=0)
    with pytest.raises(ConfigError, match="prefix 'api/' must be None or a path starting with"):
        asgi_app(handler, "fc2", prefix="api/")


# --- web mode: FC's custom runtime ------------------------------------------------------------


FC_HEADERS = {
    "x-fc-request-id": "web-req-1",
    "x-fc-function-name": "my-fn",
    "x-fc-access-key-id": "LTAI-id",
    "x-fc-access-key-secret": "secret-value-canary",
    "x-fc-security-token": "token-canary",
    "x-fc-region": "cn-shanghai",
}


@pytest.fixture
def web() -> Iterator[str]:
    # The deployed web function, as FC's gateway reaches it (with FC's x-fc-* headers).
    with running_server(WebFunction(Bridge(apps.app))) as url:
        yield url


def test_web_lifecycle_hooks_run_the_lifespan(web: str, _events: Path) -> None:
    assert events(_events) == []  # not at server start: FC calls /initialize
    initialized = httpx.post(web + "/initialize", headers=FC_HEADERS)
    assert (initialized.status_code, initialized.text) == (200, "")
    assert httpx.get(web + "/hello").json()["state"] == "resource"
    stopped = httpx.get(web + "/pre-stop")
    assert stopped.status_code == 200
    assert events(_events) == ["startup", "shutdown"]


def test_web_context_comes_from_fcs_headers_and_hides_the_secrets(web: str) -> None:
    body = httpx.get(web + "/hello", headers=FC_HEADERS).json()
    assert body["request_id"] == "web-req-1"
    assert body["function"] == "my-fn"
    assert body["has_credentials"] is True
    # The credential headers reach fc.context only, never the app's request headers.
    assert body["headers"] == ["x-fc-function-name", "x-fc-region", "x-fc-request-id"]


def test_web_root_path_from_fcs_base_path_header(web: str) -> None:
    response = httpx.get(web + PREFIX + "/hello", headers={"x-fc-base-path": PREFIX + "/"})
    assert response.json()["root_path"] == PREFIX
    assert response.json()["path"] == PREFIX + "/hello"


def test_web_streams_responses(web: str) -> None:
    with httpx.stream("GET", web + "/stream") as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        assert list(response.iter_lines()) == ["chunk 0", "chunk 1", "chunk 2"]


def test_web_limits_and_errors_match_the_other_modes(web: str) -> None:
    with httpx.Client() as client:
        assert padded(client, web + "/", 8192).status_code == 200
        assert padded(client, web + "/", 8193).status_code == 400
    assert httpx.get(web + "/big-headers?size=8193").status_code == 502
    assert httpx.get(web + "/boom").status_code == 500


def test_web_response_body_limit_holds_the_response_back(loop: SharedLoop) -> None:
    front = asgi_app(Bridge(apps.app, limits=Limits(response_body=10), loop=loop), "web")
    with running_server(front) as url:
        assert httpx.get(url + "/stream").status_code == 502
        small = httpx.get(url + "/cookies")
    assert (small.status_code, small.text) == (200, "cookies")


def test_web_initializer_failure_is_a_500_and_every_request_too(loop: SharedLoop) -> None:
    with running_server(asgi_app(Bridge(apps.broken, loop=loop), "web")) as url:
        initialized = httpx.post(url + "/initialize")
        request = httpx.get(url + "/")
    assert initialized.status_code == 500
    assert "database unreachable" in initialized.text
    assert request.status_code == 500


def test_uvicorn_runs_handler_local_directly(loop: SharedLoop) -> None:
    # What "uvicorn main:local_app" does with local_app = asgi_app(handler).
    local_app = asgi_app(Bridge(apps.app, loop=loop))
    with running_server(local_app) as url:
        assert httpx.get(url + "/hello").json()["state"] == "resource"
        assert httpx.get(url + "/binary").content == bytes(range(256))
