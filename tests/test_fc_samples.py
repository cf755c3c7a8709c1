"""Against what FC itself produces: the samples in ``../shared/fc-samples/`` (read from there).

``fc2-environs.json`` holds environs FC 2.0's Python runtime code builds, with the gateway's
parameters for each; ``fc3-events/`` the FC 3.0 trigger events Serverless Devs ships. The
location can be given as ``FC_BRIDGE_SAMPLES``; CI sets ``FC_BRIDGE_REQUIRE_SAMPLES=1`` so that
missing samples fail the run instead of skipping these tests.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import sys
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import fc_bridge._wsgi
from fc_bridge import Bridge, UnsupportedEventError
from fc_bridge._loop import SharedLoop
from fc_bridge.local.emulator import Invocation, call_event, call_wsgi, wsgi_environ

from .conftest import SAMPLES, FCContext

if not SAMPLES.is_dir():  # pragma: no cover  # present here and in CI
    if os.environ.get("FC_BRIDGE_REQUIRE_SAMPLES") == "1":
        raise RuntimeError(f"FC's samples are missing: no directory {SAMPLES}.")
    pytest.skip(f"FC's samples are not at {SAMPLES}", allow_module_level=True)

FC2 = json.loads((SAMPLES / "fc2-environs.json").read_text())["cases"]
FC3_HTTP = ["http.json", "http-e2e.json"]
FC3_OTHER = sorted(
    path.name for path in (SAMPLES / "fc3-events").glob("*.json") if path.name not in FC3_HTTP
)


class SampleContext(FCContext):
    """FC 2.0's context for the samples' function (handler ``main.handler``)."""


def sample_invocation(case: dict[str, Any]) -> Invocation:
    """The request the gateway parameters of ``case`` describe, as the emulator takes it."""
    gateway = case["gateway_params"]
    headers = [(name, value) for name, values in gateway["headersMap"].items() for value in values]
    body = base64.b64decode(case["body_base64"])
    return Invocation(gateway["method"], gateway["requestURI"], headers, body, gateway["clientIP"])


def as_sample(environ: dict[str, Any]) -> dict[str, Any]:
    """An environ written the way the samples file writes one (objects by their type)."""
    shown: dict[str, Any] = {}
    for key, value in environ.items():
        if key in os.environ and environ[key] == os.environ[key]:
            continue  # the process environment, which the samples leave out
        if key == "fc.context":
            value = {"type": "FCContext"}
        elif key == "wsgi.errors":
            value = {"type": "stderr" if value is sys.stderr else type(value).__name__}
        elif key == "wsgi.input":
            data = value.getvalue()
            value = {"type": type(value).__name__, "value_base64": base64.b64encode(data).decode()}
        elif key == "wsgi.version":
            value = list(value)
        shown[key] = value
    return shown


def sample_environ(case: dict[str, Any], context: Any) -> dict[str, Any]:
    """The sample's own environ, with real objects where the file names them."""
    environ = dict(case["environ"])
    environ["fc.context"] = context
    environ["wsgi.errors"] = sys.stderr
    environ["wsgi.input"] = io.BytesIO(base64.b64decode(environ["wsgi.input"]["value_base64"]))
    environ["wsgi.version"] = tuple(environ["wsgi.version"])
    return environ


@pytest.mark.parametrize("case", FC2, ids=[case["title"] for case in FC2])
def test_the_emulator_builds_fcs_environ_key_by_key(case: dict[str, Any]) -> None:
    context = SampleContext()
    context.function.handler = "main.handler"
    built = as_sample(wsgi_environ(sample_invocation(case), context))
    expected = case["environ"]
    assert sorted(built) == sorted(expected)
    for key in expected:
        assert (key, built[key]) == (key, expected[key])


async def where(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {
            "url": str(request.url),
            "for": str(request.url_for("where", path="x")),
            "root_path": request.scope["root_path"],
            "host": request.headers.get("host"),
            "server": list(request.scope["server"] or []) or None,
            "client": request.client.host if request.client else None,
            "cookie": request.headers.get("cookie"),
            "body": body.decode(),
        }
    )


app = Starlette(routes=[Route("/{path:path}", where, methods=["GET", "POST", "HEAD"])])


def answer(
    handler: Bridge, case: dict[str, Any], drop: tuple[str, ...] = (), account_id: str = "acct"
) -> dict[str, Any]:
    environ = sample_environ(case, SampleContext(account_id=account_id))
    for key in drop:
        del environ[key]
    response = call_wsgi(handler, environ)
    assert response.status == 200
    return json.loads(response.body) if response.body else {}


@pytest.mark.parametrize(
    "case", [c for c in FC2 if c["gateway_params"]["method"] != "HEAD"], ids=lambda c: c["title"]
)
def test_every_fc2_sample_reaches_the_app_with_urls_on_the_clients_host(
    case: dict[str, Any], loop: SharedLoop
) -> None:
    seen = answer(Bridge(app, lifespan="off", loop=loop, host="api.example.com"), case)
    gateway = case["gateway_params"]
    assert "FCRUNTIME" not in json.dumps(seen)
    host = gateway["headersMap"].get("Host", ["api.example.com"])[0]
    assert seen["host"] == host
    assert seen["url"].startswith(f"http://{host}{seen['root_path']}/")
    assert seen["for"] == f"http://{host}{seen['root_path']}/x"
    assert seen["client"] == gateway["clientIP"]
    assert seen["body"] == base64.b64decode(case["body_base64"]).decode()


def test_without_a_host_on_fcs_default_address_the_app_sees_the_default_domain(
    loop: SharedLoop,
) -> None:
    [case] = [c for c in FC2 if c["title"].startswith("GET on the default address")]
    seen = answer(Bridge(app, lifespan="off", loop=loop), case, drop=("HTTP_HOST",))
    domain = "acct.cn-hangzhou.fc.aliyuncs.com"  # <account_id>.<region>.fc.aliyuncs.com
    assert (seen["host"], seen["server"]) == (domain, [domain, 80])
    assert seen["url"] == f"http://{domain}/2016-08-15/proxy/svc/fn/items/a b?q=1&q=2&z=%2F"
    assert seen["for"] == f"http://{domain}/2016-08-15/proxy/svc/fn/x"


def test_without_a_host_or_an_account_in_the_context_the_app_sees_no_host(
    loop: SharedLoop,
) -> None:
    [case] = [c for c in FC2 if c["title"].startswith("GET on the default address")]
    handler = Bridge(app, lifespan="off", loop=loop)
    seen = answer(handler, case, drop=("HTTP_HOST",), account_id="")
    assert (seen["host"], seen["server"]) == (None, None)
    assert seen["url"].startswith("/2016-08-15/proxy/svc/fn/items/")


def test_without_a_host_on_a_custom_domain_urls_are_relative_and_a_warning_names_the_option(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fc_bridge._wsgi, "_warned_no_host", False)
    [case] = [c for c in FC2 if "no Host" in c["title"]]
    handler = Bridge(app, lifespan="off", loop=loop)
    with caplog.at_level(logging.WARNING, logger="fc_bridge"):
        seen = answer(handler, case)
        answer(handler, case)
    assert (seen["host"], seen["server"]) == (None, None)
    assert seen["url"] == "/items/x?q=1"  # relative: never http://FCRUNTIME:9000/items/x
    assert "FCRUNTIME" not in seen["for"]
    [warning] = [r for r in caplog.records if "without a Host header" in r.getMessage()]
    assert 'bridge(app, host="api.example.com")' in warning.getMessage()


def test_fcs_comma_joined_cookie_lines_reach_the_app_as_fc_joined_them(loop: SharedLoop) -> None:
    [case] = [c for c in FC2 if "cookies" in c["title"]]
    case = {**case, "environ": {**case["environ"], "REQUEST_METHOD": "GET"}}
    assert answer(Bridge(app, lifespan="off", loop=loop), case)["cookie"] == "a=1,b=2"


def load_fc3(name: str) -> bytes:
    return (SAMPLES / "fc3-events" / name).read_bytes()


class FC3SampleContext:
    request_id = "sample-request"
    account_id = "143**********149"
    region = "cn-huhehaote"


@pytest.mark.parametrize("name", FC3_HTTP)
def test_fc3_http_samples_reach_the_app_with_the_function_urls_host(
    name: str, loop: SharedLoop
) -> None:
    event = json.loads(load_fc3(name))
    handler = Bridge(app, lifespan="off", loop=loop)
    response = call_event(handler, load_fc3(name), FC3SampleContext())
    assert response.status == 200
    seen = json.loads(response.body)
    domain = event["requestContext"]["domainName"]  # the sample has no Host header
    assert (seen["host"], seen["server"]) == (domain, [domain, 443])
    assert seen["url"] == f"https://{domain}{event['rawPath']}"
    assert seen["client"] == event["requestContext"]["http"]["sourceIp"]
    assert seen["body"] == event["body"]


@pytest.mark.parametrize("name", FC3_OTHER)
def test_fc3_samples_of_other_triggers_go_to_on_event_exactly_as_fc_sent_them(
    name: str, loop: SharedLoop
) -> None:
    received: list[Any] = []

    def on_event(event: Any, context: Any) -> dict[str, str]:
        received.append((event, context))
        return {"handled": name}

    raw = load_fc3(name)
    context = FC3SampleContext()
    handler = Bridge(app, lifespan="off", loop=loop, on_event=on_event)
    assert handler(raw, context) == {"handled": name}
    assert received == [(raw, context)]
    without = Bridge(app, lifespan="off", loop=loop)
    try:
        keys = sorted(json.loads(raw))
    except ValueError:  # two of Serverless Devs' CDN samples have trailing commas
        answer = without(raw, context)
        assert (answer["statusCode"], json.loads(answer["body"])["ErrorCode"]) == (
            400,
            "InvalidArgument",
        )
        return
    with pytest.raises(UnsupportedEventError, match="not an HTTP request") as caught:
        without(raw, context)
    assert str(keys[:8]) in str(caught.value)  # its keys, never its values
