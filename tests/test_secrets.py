"""FC's credentials never leave the context: not in logs, answers, reprs or the app's headers."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fc_bridge import Bridge, Limits, WebFunction
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Receive, Scope, Send
from fc_bridge.local import asgi_app

from .conftest import SECRET, FCContext, fc_call, running_server

KEY_ID = "LTAI-key-id-canary"
TOKEN = "security-token-canary"
CANARIES = (SECRET, KEY_ID, TOKEN)
CREDENTIAL_HEADERS = [
    ("X-Fc-Access-Key-Id", KEY_ID),
    ("X-Fc-Access-Key-Secret", SECRET),
    ("X-Fc-Security-Token", TOKEN),
]

seen: list[Any] = []


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    seen.clear()
    yield
    seen.clear()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Misbehaves in every way the path asks for; records what it was handed."""
    if scope["type"] == "lifespan":
        return
    seen.append(
        {
            "headers": scope["headers"],
            "repr": repr(scope),
            "context": repr(scope["fc.context"]),
            "event": repr(scope.get("fc.event")),
        }
    )
    path = scope["path"]
    if path.endswith("/raise"):
        raise RuntimeError("the app failed")
    if path.endswith("/hang"):
        await asyncio.sleep(3600)
    if path.endswith("/split"):
        headers = [(b"x-a", b"v\r\nx: y")]
    elif path.endswith("/big"):
        headers = [(b"x-big", b"v" * 10_000)]
    else:
        headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"fine"})


PATHS = ["/", "/raise", "/hang", "/split", "/big"]


def dict_context() -> dict[str, Any]:
    return {
        "request_id": "req-dict",
        "credentials": {
            "access_key_id": KEY_ID,
            "access_key_secret": SECRET,
            "security_token": TOKEN,
        },
        "function": {"name": "fn", "timeout": 60},
    }


def assert_no_canary(*texts: object) -> None:
    for text in texts:
        for canary in CANARIES:
            assert canary not in str(text), f"{canary} leaked in {str(text)[:200]}"


@pytest.mark.parametrize("context_style", ["attributes", "dict"])
def test_fc2_no_canary_anywhere(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture, context_style: str
) -> None:
    context: Any = FCContext() if context_style == "attributes" else dict_context()
    handler = Bridge(app, timeout=0.2, limits=Limits(request_target=50), loop=loop)
    responses = []
    with caplog.at_level(logging.DEBUG, logger="fc_bridge"):
        for path in [*PATHS, "/" + "x" * 100]:
            responses.append(fc_call(handler, "GET", path, CREDENTIAL_HEADERS, context=context))
    assert [r.status for r in responses] == [200, 500, 504, 502, 502, 400]
    assert len(seen) == 5
    for one in seen:
        assert not any(name.startswith(b"x-fc-access") for name, _ in one["headers"])
        assert not any(name == b"x-fc-security-token" for name, _ in one["headers"])
    assert_no_canary(
        caplog.text, *seen, *(r.body for r in responses), *(r.headers for r in responses)
    )
    assert_no_canary(*(r.exc_info for r in caplog.records), *(r.args for r in caplog.records))


def test_fc3_no_canary_in_headers_event_or_logs(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Bridge(app, timeout=0.2, loop=loop)
    results = []
    with caplog.at_level(logging.DEBUG, logger="fc_bridge"):
        for path in PATHS:
            event = {
                "version": "v1",
                "rawPath": path,
                "headers": dict(CREDENTIAL_HEADERS),
                "body": "",
                "isBase64Encoded": False,
                "requestContext": {"requestId": "r3", "http": {"method": "GET", "path": path}},
            }
            results.append(handler(json.dumps(event).encode(), dict_context()))
    assert [r["statusCode"] for r in results] == [200, 500, 504, 502, 502]
    assert_no_canary(caplog.text, *seen, *results)
    # The event the app sees keeps its other headers.
    assert "X-Fc-Access-Key-Secret" not in seen[0]["event"]


def test_a_dict_context_reaches_the_app_usable_and_redacted(loop: SharedLoop) -> None:
    got: list[Any] = []

    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        context = scope["fc.context"]
        got.append((context.credentials.access_key_secret, context["function"]["name"]))
        got.append(repr(context))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    fc_call(Bridge(reader, loop=loop), context=dict_context())
    assert got[0] == (SECRET, "fn")  # the app can use its credentials
    assert "'credentials': <redacted>" in got[1]
    assert_no_canary(got[1])


@pytest.fixture
def web() -> Iterator[str]:
    with running_server(WebFunction(Bridge(app, timeout=0.3))) as url:
        yield url


def test_web_function_no_canary(web: str, caplog: pytest.LogCaptureFixture) -> None:
    headers = [*CREDENTIAL_HEADERS, ("x-fc-request-id", "web-1")]
    with caplog.at_level(logging.DEBUG, logger="fc_bridge"):
        responses = [httpx.get(web + path, headers=headers, timeout=10) for path in PATHS]
    assert [r.status_code for r in responses] == [200, 500, 504, 502, 502]
    assert_no_canary(
        caplog.text, *seen, *(r.text for r in responses), *(r.headers for r in responses)
    )
    assert all(r.headers.get("x-fc-status") == "404" for r in responses[1:])


@pytest.mark.parametrize("mode", ["fc2", "fc3", "web"])
def test_clients_may_not_send_fcs_own_headers_locally(mode: str) -> None:
    with running_server(asgi_app(Bridge(app), mode)) as url:
        refused = httpx.get(url + "/", headers={"X-Fc-Access-Key-Secret": SECRET})
        allowed = httpx.get(url + "/", headers={"X-Fc-Log-Type": "Tail"})
    assert refused.status_code == 400
    # A web function deployed without --behind-fc would refuse FC's own requests: say so.
    hint = " (if FC's own gateway is in front, serve with fc-bridge serve --behind-fc)"
    assert json.loads(refused.text) == {
        "ErrorCode": "InvalidArgument",
        "ErrorMessage": "The request header 'x-fc-access-key-secret' is FC's own; "
        f"clients may not send it{hint if mode == 'web' else ''}.",
    }
    assert allowed.status_code == 200
