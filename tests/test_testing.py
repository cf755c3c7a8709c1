"""fc_bridge.testing: users' own tests through FC's checks and the deployed handler."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples.fastapi_app import main
from fc_bridge import Bridge, ConfigError
from fc_bridge.testing import AsyncFCClient, FCClient, events

from .conftest import PREFIX, SAMPLES

MODES = ["fc2", "fc3", "web"]


async def context(request: Request) -> JSONResponse:
    ctx = request.scope["fc.context"]
    return JSONResponse(
        {
            "request_id": ctx.request_id,
            "timeout": ctx.function.timeout,
            "memory": ctx.function.memory,
            "for": str(request.url_for("context")),
            "started": request.state.started if hasattr(request.state, "started") else None,
            "headers": sorted(k for k in request.headers if k.startswith("x-fc-bridge")),
        }
    )


async def lifespan(app: Any) -> Any:
    yield {"started": True}


def contextual() -> Bridge:
    from contextlib import asynccontextmanager

    routes = [Route("/context", context, name="context")]
    app = Starlette(routes=routes, lifespan=asynccontextmanager(lifespan))
    return Bridge(app)


@pytest.mark.parametrize("mode", MODES)
def test_with_runs_the_lifespan_and_state_reaches_requests(mode: str) -> None:
    with FCClient(main.handler, mode=mode) as client:
        assert client.post("/items", json={"name": "tea", "price": 2.5}).status_code == 201
        assert [item["name"] for item in client.get("/items").json()] == ["tea"]


@pytest.mark.parametrize("mode", MODES)
def test_the_context_is_settable_per_request_and_the_header_never_reaches_the_app(
    mode: str,
) -> None:
    with FCClient(contextual(), mode=mode) as client:
        with client.invocation(request_id="r-7", timeout=7, memory=1024):
            inside = client.get("/context")
        after = client.get("/context").json()
    assert inside.headers["x-fc-request-id"] == "r-7"
    assert {k: inside.json()[k] for k in ("request_id", "timeout", "memory", "headers")} == {
        "request_id": "r-7",
        "timeout": 7,
        "memory": 1024,
        "headers": [],
    }
    assert (after["timeout"], after["memory"], after["started"]) == (60, 512, True)
    assert after["request_id"] != "r-7"


@pytest.mark.parametrize("mode", MODES)
def test_under_the_prefix_urls_keep_it(mode: str) -> None:
    with FCClient(contextual(), mode=mode, prefix=PREFIX) as client:
        scheme = "https" if mode == "fc3" else "http"  # what FC reports on each path
        assert client.get("/context").json()["for"] == f"{scheme}://testserver{PREFIX}/context"


@pytest.mark.parametrize("mode", MODES)
def test_requests_go_through_fcs_checks(mode: str) -> None:
    with FCClient(main.handler, mode=mode) as client:
        refused = client.get("/", headers={"x-fc-request-id": "mine"})
        too_long = client.get("/items/1", params={"q": "x" * 5000})
    assert (refused.status_code, refused.json()["ErrorCode"]) == (400, "InvalidArgument")
    assert (too_long.status_code, too_long.json()["ErrorCode"]) == (400, "InvalidArgument")


def test_an_app_exception_is_fcs_500_not_raised() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise RuntimeError("boom")

    with FCClient(Bridge(broken, lifespan="off")) as client:
        response = client.get("/")
    assert (response.status_code, response.text) == (500, "Internal Server Error")


def test_invocation_names_what_it_can_set() -> None:
    client = FCClient(main.handler)
    with pytest.raises(ConfigError, match="got colour"), client.invocation(colour="red"):
        pass
    client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", MODES)
async def test_the_async_client_does_the_same(mode: str) -> None:
    async with AsyncFCClient(contextual(), mode=mode) as client:
        with client.invocation(request_id="a-1"):
            response = await client.get("/context")
    assert (response.json()["request_id"], response.json()["started"]) == ("a-1", True)


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys and value types, not values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


@pytest.mark.parametrize(
    ("sample", "built"),
    [
        ("http.json", events.http("POST", "/a?b=1", headers=[("User-Agent", "t")], body=b"x")),
        ("oss.json", events.oss("bucket", "image/a.jpg", size=3, etag="E")),
        ("mns-stream.json", events.mns("hello", stream=True, attributes={"key": "value"})),
        ("mns-stream.json", events.mns("hello topic", stream=True)),
        ("mns-without-MessageAttributes.json", events.mns("hello")),
        ("mns-with-MessageAttributes.json", events.mns("hello", attributes={"key": "value"})),
    ],
)
def test_event_builders_make_the_shapes_fc_sends(sample: str, built: bytes) -> None:
    expected = json.loads((SAMPLES / "fc3-events" / sample).read_text())
    made = json.loads(built)
    if sample == "mns-stream.json" and "attrs" not in made:  # a message without attributes
        del expected["attrs"]
    if sample == "http.json":  # FC's sample has a triggerId; FC's documented struct does not
        del expected["requestContext"]["triggerId"]
        expected["queryParameters"] = {"b": "1"}
        expected["headers"] = made["headers"]  # the request's own
    assert shape(made) == shape(expected)


def test_a_timer_event_has_fcs_documented_fields_and_reaches_on_event() -> None:
    seen: list[Any] = []

    def on_event(event: bytes, context: Any) -> str:
        seen.append(json.loads(event))
        return "ok"

    handler = Bridge(main.app, on_event=on_event)
    event = events.timer("nightly", trigger_name="cron", when=0)
    assert handler(event, None) == "ok"
    assert seen == [
        {"triggerTime": "1970-01-01T00:00:00Z", "triggerName": "cron", "payload": "nightly"}
    ]


def test_an_http_event_reaches_the_handler() -> None:
    answer = main.handler(events.http("GET", "/items/3?q=z"), None)
    assert (answer["statusCode"], json.loads(answer["body"])["q"]) == (200, "z")


async def failing_startup(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no database"})


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_startup_fails_the_with_statement(mode: str) -> None:
    client = FCClient(Bridge(failing_startup, lifespan="on"), mode=mode)
    with pytest.raises(RuntimeError, match="no database"), client:
        pass
    assert client.is_closed


@pytest.mark.asyncio
async def test_a_failed_startup_fails_the_async_with_statement() -> None:
    client = AsyncFCClient(Bridge(failing_startup, lifespan="on"), mode="web")
    with pytest.raises(RuntimeError, match="no database"):
        async with client:
            pass
    assert client.is_closed


LIFESPAN_EVENTS: list[str] = []


@pytest.fixture
def lifespan_checked() -> Any:
    """Set up before fc_client, so torn down after it: pre_stop must have run by then."""
    LIFESPAN_EVENTS.clear()
    yield LIFESPAN_EVENTS
    assert LIFESPAN_EVENTS == ["startup", "request", "shutdown"]


async def recorded(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rpartition(".")[2]
            LIFESPAN_EVENTS.append(kind)
            await send({"type": f"{message['type']}.complete"})
            if kind == "shutdown":
                return
    LIFESPAN_EVENTS.append("request")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body"})


@pytest.mark.parametrize("mode", MODES)
def test_the_fc_client_fixture_starts_and_stops_the_function(
    mode: str, lifespan_checked: list[str], fc_client: Any
) -> None:
    client = fc_client(recorded, mode=mode)
    assert lifespan_checked == ["startup"]  # the initializer ran as the client was made
    assert client.get("/").status_code == 204
