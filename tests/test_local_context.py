"""FC-shaped contexts built locally: the right fields, credentials only from where FC puts them."""

from __future__ import annotations

import copy

import pytest

from fc_bridge._function import (
    Credentials,
    FunctionInfo,
    context_from_headers,
    make_context,
)

SECRET = "local-secret-canary"
SECRET_HEADERS = {b"x-fc-access-key-id": b"id", b"x-fc-access-key-secret": SECRET.encode()}


def test_function_info_from_options_then_environment() -> None:
    environ = {
        "FC_FUNCTION_NAME": "from-env",
        "FC_REGION": "cn-beijing",
        "FC_FUNCTION_MEMORY_SIZE": "1024",
    }
    info = FunctionInfo.from_env(environ, name="from-option", timeout=None)
    assert (info.name, info.region, info.memory, info.timeout) == (
        "from-option",
        "cn-beijing",
        1024,
        60,
    )


@pytest.mark.parametrize(
    ("environ", "version"),
    [
        ({"FC_FUNCTION_VERSION": "7"}, "7"),  # Debian 11+ runtimes
        ({"FC_VER_ID": "3"}, "3"),  # Debian 10 runtimes
        ({"FC_FUNCTION_VERSION": "7", "FC_VER_ID": "3"}, "7"),
        ({"FC_VERSION_ID": "9", "FC_FUNCTION_TIMEOUT": "5"}, ""),  # FC sets neither
    ],
)
def test_function_info_reads_the_variables_fc_really_sets(
    environ: dict[str, str], version: str
) -> None:
    info = FunctionInfo.from_env(environ)
    assert (info.version_id, info.timeout) == (version, 60)


def test_fc2_context_has_fc2s_fields_and_a_fresh_request_id() -> None:
    info = FunctionInfo(name="fn", handler="main.handler", memory=256, timeout=30)
    first, second = (make_context(info, 2) for _ in range(2))
    assert first.request_id != second.request_id
    assert (first.function.name, first.function.handler, first.function.memory) == (
        "fn",
        "main.handler",
        256,
    )
    assert (first.service.name, first.region, first.retry_count) == (
        "fc-bridge-local",
        "cn-hangzhou",
        0,
    )
    assert first.credentials is None  # none in this environment: never invented


def test_fc3_context_has_no_credentials_and_no_service() -> None:
    context = make_context(FunctionInfo(version_id="3"), 3, request_id="r")
    assert context.request_id == "r"
    assert context.function.version_id == "3"
    assert not hasattr(context, "credentials")
    assert not hasattr(context, "service")


def test_credentials_come_from_the_environment_and_never_show(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-id")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", "token")
    context = make_context(FunctionInfo(), 2)
    assert context.credentials is not None
    assert context.credentials.access_key_secret == SECRET
    assert SECRET not in repr(context)
    assert SECRET not in repr(context.credentials)
    assert "request_id=" in repr(context)


def test_a_half_set_environment_gives_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-id")
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", raising=False)
    assert Credentials.from_env() is None


def test_context_from_a_web_functions_headers() -> None:
    headers = {
        b"x-fc-request-id": b"rid",
        b"x-fc-function-name": b"web-fn",
        b"x-fc-function-memory": b"2048",
        b"x-fc-function-timeout": b"not-a-number",
        b"x-fc-region": b"cn-shenzhen",
        b"x-fc-retry-count": b"2",
        b"x-fc-access-key-id": b"id",
        b"x-fc-access-key-secret": SECRET.encode(),
    }
    context = context_from_headers(headers, FunctionInfo(timeout=99))
    assert (context.request_id, context.function.name, context.region) == (
        "rid",
        "web-fn",
        "cn-shenzhen",
    )
    assert (context.function.memory, context.function.timeout, context.retry_count) == (2048, 99, 2)
    assert context.credentials is not None
    assert context.credentials.access_key_secret == SECRET
    assert context.credentials.security_token == ""
    assert SECRET not in repr(context)


def test_a_web_context_is_made_from_the_headers_when_first_read() -> None:
    # Most requests read nothing but the request id: the rest waits for the first read.
    headers = {b"x-fc-request-id": b"rid", b"x-fc-region": b"cn-beijing", b"x-fc-retry-count": b"1"}
    context = context_from_headers(headers, FunctionInfo(name="fn"))
    assert vars(context) == {"request_id": "rid"}
    assert getattr(context, "log_project", None) is None  # FC 3.0's field: not on this shape
    assert (context.region, context.retry_count, context.function.name) == ("cn-beijing", 1, "fn")
    assert vars(context)["region"] == "cn-beijing"
    with pytest.raises(AttributeError, match="'HeaderContext' object has no attribute 'log_store'"):
        context.log_store  # noqa: B018
    unread = context_from_headers({b"x-fc-request-id": b"r2", **SECRET_HEADERS}, FunctionInfo())
    shown = repr(unread)  # a repr shows the fields, made for it, and never the secrets
    assert shown.startswith("LocalContext(request_id='r2', function=Function(name=")
    assert SECRET not in shown
    assert unread.credentials is not None
    assert unread.credentials.access_key_secret == SECRET
    copied = copy.copy(context_from_headers({b"x-fc-request-id": b"r3"}, FunctionInfo()))
    assert (copied.request_id, copied.region) == ("r3", "cn-hangzhou")


def test_context_from_headers_without_fc_headers_is_local() -> None:
    context = context_from_headers({}, FunctionInfo(name="local"))
    assert context.function.name == "local"
    assert context.request_id


def test_each_request_gets_its_own_context_from_what_the_function_headers_say() -> None:
    # What the function headers make is remembered (FC sends the same values every time), but
    # every request still gets a context of its own, and new values are never answered from
    # what an earlier request said, however many sets of them come.
    info = FunctionInfo()
    contexts = [
        context_from_headers(
            {b"x-fc-request-id": b"r%d" % i, b"x-fc-function-name": b"fn-%d" % (i % 80)}, info
        )
        for i in range(200)
    ]
    assert [(c.request_id, c.function.name) for c in contexts] == [
        (f"r{i}", f"fn-{i % 80}") for i in range(200)
    ]
    assert contexts[0] is not contexts[80]
    assert contexts[0].function is not contexts[80].function
    contexts[0].function.name = "changed by an app"
    again = context_from_headers({b"x-fc-function-name": b"fn-0"}, info)
    assert again.function.name == "fn-0"
    # The same headers completing another function's info: that info's values, not the first's.
    other = context_from_headers({b"x-fc-function-name": b"fn-0"}, FunctionInfo(memory=1024))
    assert (other.function.name, other.function.memory) == ("fn-0", 1024)
    assert context_from_headers({b"x-fc-function-name": b"fn-0"}, info).function.memory == 512
