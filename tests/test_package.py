"""The package as users meet it: its public names, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys
import types
import typing

import pytest

import fc_bridge

# An ASGI app answering 204, as source for the subprocesses below.
NO_CONTENT_APP = (
    "async def app(scope, receive, send):\n"
    "    await send({'type': 'http.response.start', 'status': 204, 'headers': []})\n"
    "    await send({'type': 'http.response.body', 'body': b''})\n"
)


def python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by this Python in a fresh process: what a cold start imports is seen whole."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_all_is_complete_and_sorted() -> None:
    public = {
        name
        for name in dir(fc_bridge)
        if not name.startswith("_")
        and not isinstance(getattr(fc_bridge, name), types.ModuleType)
        and getattr(fc_bridge, name) is not getattr(typing, name, None)
    } - {"annotations"}
    assert sorted(fc_bridge.__all__) == fc_bridge.__all__
    assert set(fc_bridge.__all__) - {"__version__"} == public


def test_names_only_some_functions_need_are_imported_on_first_use() -> None:
    code = (
        "import sys, fc_bridge; before = set(sys.modules); "
        "web = fc_bridge.WebFunction; info = fc_bridge.FunctionInfo; kind = fc_bridge.FCContext; "
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('fc_bridge')), "
        "web.__module__, info.__module__, kind.__module__)"
    )
    done = python(code)
    assert done.stdout.split() == [
        "['fc_bridge._function',",
        "'fc_bridge._scope',",
        "'fc_bridge._types',",
        "'fc_bridge._web']",
        "fc_bridge._web",
        "fc_bridge._function",
        "fc_bridge._types",
    ]
    with pytest.raises(AttributeError, match="module 'fc_bridge' has no attribute 'Nope'"):
        fc_bridge.Nope  # noqa: B018


CALLS = {
    "nothing": "",
    "wsgi": "h({'REQUEST_METHOD': 'GET', 'PATH_INFO': '/', 'HTTP_HOST': 'h'}, lambda *a: None)",
    "event": (
        'h(b\'{"version": "v1", "rawPath": "/", "headers": {}, '
        '"requestContext": {"http": {"method": "GET"}}}\', None)'
    ),
}


@pytest.mark.parametrize(
    ("call", "loaded"),
    [
        ("nothing", []),
        ("wsgi", ["fc_bridge._scope", "fc_bridge._wsgi"]),
        ("event", ["fc_bridge._event", "fc_bridge._scope"]),
    ],
)
def test_each_way_fc_calls_imports_only_its_own_module(call: str, loaded: list[str]) -> None:
    # A function is called one way only: the other way's module stays out of its cold start.
    code = (
        "import sys\n"
        f"{NO_CONTENT_APP}"
        "from fc_bridge import bridge\n"
        "h = bridge(app, lifespan='off')\n"
        "before = set(sys.modules)\n"
        f"{CALLS[call]}\n"
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('fc_bridge')))"
    )
    done = python(code)
    assert done.stdout.strip() == repr(loaded), done.stderr


def test_only_a_dict_context_imports_the_dict_wrapper() -> None:
    # FC passes its context as an object, shown to the app as it is; tests and tools pass
    # dicts, which the app gets wrapped (and whose repr hides the credentials).
    code = (
        "import sys\n"
        "seen = []\n"
        f"{NO_CONTENT_APP}"
        "async def seeing(scope, receive, send):\n"
        "    seen.append(scope['fc.context'])\n"
        "    await app(scope, receive, send)\n"
        "from fc_bridge import bridge\n"
        "h = bridge(seeing, lifespan='off')\n"
        "class FCContext:\n"
        "    request_id = 'r-1'\n"
        "environ = {'REQUEST_METHOD': 'GET', 'PATH_INFO': '/', 'HTTP_HOST': 'h'}\n"
        "h({**environ, 'fc.context': FCContext()}, lambda *a: None)\n"
        "print('fc_bridge._dictcontext' in sys.modules, type(seen[-1]).__name__)\n"
        "secret = {'request_id': 'r-2', 'credentials': {'access_key_secret': 'canary'}}\n"
        "h({**environ, 'fc.context': secret}, lambda *a: None)\n"
        "print('fc_bridge._dictcontext' in sys.modules, repr(seen[-1]))\n"
    )
    done = python(code)
    assert done.stdout.splitlines() == [
        "False FCContext",
        "True AppContext({'request_id': 'r-2', 'credentials': <redacted>})",
    ], done.stderr


def test_exceptions_are_imported_when_raised_or_named() -> None:
    # A working function never makes the exception classes; a raise makes them, and the class
    # raised is the one fc_bridge exports.
    code = (
        "import sys\n"
        f"{NO_CONTENT_APP}"
        "import fc_bridge\n"
        "h = fc_bridge.bridge(app)\n"
        f"{CALLS['wsgi']}\n"
        "print('fc_bridge._errors' in sys.modules)\n"
        "try:\n"
        "    fc_bridge.bridge(app, limits=fc_bridge.Limits(request_body=-1))\n"
        "except Exception as exc:\n"
        "    print(type(exc) is fc_bridge.ConfigError, isinstance(exc, fc_bridge.FCBridgeError))\n"
        "    print(exc)\n"
    )
    done = python(code)
    assert done.stdout.splitlines() == [
        "False",
        "True True",
        "Limits.request_body must be a non-negative int or None, got -1.",
    ], done.stderr


def test_every_exception_is_an_fcbridgeerror_with_a_docstring() -> None:
    for name in fc_bridge.__all__:
        obj = getattr(fc_bridge, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, fc_bridge.FCBridgeError)
            assert obj.__doc__ and obj.__doc__.strip()


def test_bridge_is_the_bridge_class() -> None:
    assert fc_bridge.bridge is fc_bridge.Bridge


def test_import_does_not_load_the_local_tooling() -> None:
    code = (
        "import sys, fc_bridge; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'uvicorn', 'httpx', 'starlette', 'fastapi', 'anyio', 'click', 'h11'} "
        "or m in {'fc_bridge.local.emulator', 'fc_bridge.local.cli'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_local_tooling_names_its_front_ends_when_they_are_asked_for() -> None:
    import fc_bridge.local as local
    from fc_bridge.local import frontend

    named = {name: getattr(local, name) for name in local.__all__}
    assert (named["MODES"], named["EmulatedFC"], named["LocalWeb"]) == (
        frontend.MODES,
        frontend.EmulatedFC,
        frontend.LocalWeb,
    )
    with pytest.raises(AttributeError, match=r"'fc_bridge\.local' has no attribute 'Emulator'"):
        local.Emulator  # noqa: B018
