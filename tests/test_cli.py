"""The fc-bridge command, through its own entry point."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from fc_bridge.local.cli import main

from . import apps
from .conftest import PREFIX, free_port, wait_for_http

ROOT = Path(__file__).resolve().parent.parent
COMMAND = shutil.which("fc-bridge", path=str(Path(sys.executable).parent)) or "fc-bridge"


def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        **kwargs,
    )


class Served:
    """A running ``fc-bridge serve``: its URL, and its output once it has stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.output = ""
        self.returncode: int | None = None


@contextmanager
def serving(
    *args: str, env: dict[str, str] | None = None, stop: signal.Signals = signal.SIGTERM
) -> Iterator[Served]:
    port = free_port()
    process = subprocess.Popen(
        [COMMAND, "serve", *args, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    served = Served(f"http://127.0.0.1:{port}")
    try:
        wait_for_http(served.url)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(stop)  # SIGTERM: what FC sends an instance on shutdown
        served.output, _ = process.communicate(timeout=20)
        served.returncode = process.returncode


@pytest.mark.parametrize(
    "mode", [["--mode", "fc2"], ["--mode", "web"], ["--mode", "web", "--behind-fc"]]
)
def test_ctrl_c_stops_the_server_quietly(mode: list[str]) -> None:
    # uvicorn raises the KeyboardInterrupt again once it has stopped; uvicorn.run swallows it.
    with serving("tests.apps:handler", *mode, stop=signal.SIGINT) as served:
        pass
    assert "Traceback" not in served.output
    assert "Finished server process" in served.output.splitlines()[-1]
    assert served.returncode == 0


def test_serve_prints_its_address_mode_and_limits_and_runs_the_hooks(tmp_path: Path) -> None:
    events = tmp_path / "events"
    args = ("tests.apps:handler", "--prefix", PREFIX, "--concurrency", "2")
    with serving(*args, env={apps.EVENTS: str(events)}) as served:
        response = httpx.get(served.url + PREFIX + "/hello")
    assert response.status_code == 200
    assert response.json()["root_path"] == PREFIX
    banner = next(line for line in served.output.splitlines() if "serving" in line)
    where = f"{served.url}{PREFIX}/"
    assert f"serving tests.apps:handler at {where} in fc2 mode (concurrency 2)" in banner
    assert "limits: request_headers=8 KiB, request_target=4 KiB, request_body=32 MiB" in banner
    # FC's initializer when the server started, pre_stop when SIGTERM stopped it.
    assert events.read_text().splitlines() == ["startup", "shutdown"]


def test_web_mode_logs_the_apps_startup_when_it_happens(tmp_path: Path) -> None:
    events = tmp_path / "events"
    with serving("tests.apps:app", "--mode", "web", env={apps.EVENTS: str(events)}) as served:
        assert httpx.post(served.url + "/initialize").status_code == 200
        assert events.read_text().splitlines() == ["startup"]
    served_lines = served.output.splitlines()
    banner = next(i for i, line in enumerate(served_lines) if "serving" in line)
    started = [i for i, line in enumerate(served_lines) if "Application startup complete" in line]
    # One line, the app's own (uvicorn's lifespan, which would claim it early, is off).
    assert len(started) == 1 and started[0] > banner
    assert "starts on POST /initialize or the first request" in served_lines[banner]
    assert events.read_text().splitlines() == ["startup", "shutdown"]  # at SIGTERM


# What FC's gateway adds to every request it forwards to a custom runtime (FC_FACTS section 5).
FROM_FC = {
    "x-fc-request-id": "req-from-fc",
    "x-fc-function-name": "fn",
    "x-fc-function-timeout": "30",
    "x-fc-access-key-id": "AKID",
    "x-fc-access-key-secret": "canary-secret",
    "x-fc-security-token": "canary-token",
}


def test_behind_fc_serves_the_deployed_web_function_on_fcs_headers(tmp_path: Path) -> None:
    # What s.web.yaml runs on FC: FC's x-fc-* headers are the context, not a client's forgery.
    events = tmp_path / "events"
    args = ("tests.apps:app", "--mode", "web", "--behind-fc")
    with serving(*args, env={apps.EVENTS: str(events)}) as served:
        response = httpx.get(served.url + "/hello", headers=FROM_FC)
        assert events.read_text().splitlines() == ["startup"]  # on the first request
        tooling = httpx.get(served.url + "/tooling", headers=FROM_FC).json()
    # Nothing of FC's emulation is imported: a deployed web function's cold start needs none.
    assert tooling == [
        "fc_bridge.local",
        "fc_bridge.local.cli",
        "fc_bridge.local.package",
        "fc_bridge.local.target",
    ]
    assert response.status_code == 200
    seen = response.json()
    assert (seen["request_id"], seen["function"], seen["has_credentials"]) == (
        "req-from-fc",
        "fn",
        True,
    )
    assert "x-fc-access-key-secret" not in seen["headers"]  # in the context only
    assert "canary-secret" not in served.output and "canary-token" not in served.output
    banner = next(line for line in served.output.splitlines() if "serving" in line)
    assert "behind FC's gateway: FC's x-fc-* headers are read, not emulated" in banner
    started = [line for line in served.output.splitlines() if "startup complete" in line]
    assert len(started) == 1  # the app's own line, when it started
    assert events.read_text().splitlines() == ["startup", "shutdown"]  # at SIGTERM


@pytest.mark.parametrize(
    ("mode", "scheme"),
    [
        (["--mode", "fc2"], "http"),
        (["--mode", "fc3"], "https"),  # FC 3.0 reports none: https unless told (README)
        (["--mode", "web"], "http"),
        (["--mode", "web", "--behind-fc"], "http"),
    ],
)
def test_serve_trusts_no_forwarding_header_a_client_sends(mode: list[str], scheme: str) -> None:
    # The bridge's forwarded=n decides which X-Forwarded-* to trust (none by default): the
    # server in front must not have taken them already (uvicorn does from loopback peers).
    forged = {"x-forwarded-for": "6.6.6.6", "x-forwarded-proto": "https"}
    if "--behind-fc" in mode:
        forged.update(FROM_FC)
    with serving("tests.apps:app", *mode) as served:
        response = httpx.get(served.url + "/peer", headers=forged)
    assert response.status_code == 200, response.text
    assert response.json() == {"client": "127.0.0.1", "scheme": scheme}


def test_web_mode_without_behind_fc_refuses_fcs_headers_and_says_what_to_do() -> None:
    with serving("tests.apps:app", "--mode", "web") as served:
        response = httpx.get(served.url + "/hello", headers=FROM_FC)
    assert response.status_code == 400
    assert response.json()["ErrorMessage"] == (
        "The request header 'x-fc-request-id' is FC's own; clients may not send it "
        "(if FC's own gateway is in front, serve with fc-bridge serve --behind-fc)."
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "fc2"], "--behind-fc serves a web function: use it with --mode web, not fc2."),
        (
            ["--prefix", "/api"],
            "--behind-fc takes no --prefix: FC's gateway passes the path it was called with.",
        ),
    ],
)
def test_behind_fc_is_for_web_functions_only(args: list[str], message: str) -> None:
    result = run("serve", "tests.apps:app", "--behind-fc", *args)
    assert result.returncode == 2
    assert result.stderr.strip() == f"fc-bridge serve: error: {message}"


@pytest.mark.parametrize("mode", ["fc3", "web"])
def test_serve_other_modes(mode: str) -> None:
    with serving("tests.apps:app", "--mode", mode) as served:
        response = httpx.get(served.url + "/hello")
    assert response.status_code == 200
    assert response.json()["state"] == "resource"


def test_port_in_use_says_so(tmp_path: Path) -> None:
    with serving("tests.apps:app") as served:
        port = served.url.rsplit(":", 1)[1]
        result = run("serve", "tests.apps:app", "--port", port)
    assert result.returncode == 2
    assert result.stderr == (
        f"fc-bridge: error: port {port} on 127.0.0.1 is already in use; "
        "choose another with --port.\n"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.apps", 'TARGET "tests.apps" must be in format "<module>:<attribute>".'),
        ("no_such_module:app", 'Could not import module "no_such_module".'),
        ("tests.apps:missing", 'Attribute "missing" not found in module "tests.apps".'),
        (
            "tests.apps:not_an_app",
            'TARGET "tests.apps:not_an_app" is neither an ASGI app nor a fc_bridge.Bridge '
            "(got int); expected an ASGI 3 app or handler = bridge(app).",
        ),
    ],
)
def test_bad_targets_get_one_line_and_exit_code_2(target: str, message: str) -> None:
    result = run("serve", target, "--port", str(free_port()))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"fc-bridge: error: {message}\n"


def test_an_error_in_the_users_module_shows_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "broken_module.py").write_text(
        "def load():\n    raise ValueError('bad config')\n\nload()\n"
    )
    (tmp_path / "nested.py").write_text("import not_installed_dependency\n")
    results = [
        subprocess.run(
            [COMMAND, "invoke", f"{name}:app", "GET", "/"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        for name in ("broken_module", "nested")
    ]
    assert [r.returncode for r in results] == [2, 2]
    broken, nested = (r.stderr for r in results)
    # Python 3.13 underlines the failing expression (~~~^^): not part of what is checked here.
    broken = "".join(line for line in broken.splitlines(True) if line.strip(" ~^\n"))
    assert broken == (
        "Traceback (most recent call last):\n"
        f'  File "{tmp_path / "broken_module.py"}", line 4, in <module>\n'
        "    load()\n"
        f'  File "{tmp_path / "broken_module.py"}", line 2, in load\n'
        "    raise ValueError('bad config')\n"
        "ValueError: bad config\n"
        "fc-bridge: error: Could not import module \"broken_module\": ValueError('bad config')\n"
    )
    assert f'File "{tmp_path / "nested.py"}", line 1, in <module>' in nested
    assert nested.endswith(
        'fc-bridge: error: Could not import module "nested": '
        "No module named 'not_installed_dependency'\n"
    )


def test_debug_log_level_shows_the_traceback() -> None:
    result = run("invoke", "no_such_module:app", "GET", "/", "--log-level", "debug")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.endswith('fc-bridge: error: Could not import module "no_such_module".\n')


def test_invoke_prints_the_response() -> None:
    result = run("invoke", "tests.apps:handler", "POST", "/echo", "-H", "X-A: 1", "--data", "hello")
    assert result.returncode == 0
    assert result.stdout == "HTTP 200 OK\ncontent-type: text/plain; charset=utf-8\n\n5\n"


def test_invoke_reads_the_body_from_a_file_and_prints_json(tmp_path: Path) -> None:
    body = tmp_path / "body.bin"
    body.write_bytes(b"x" * 42)
    result = run("invoke", "tests.apps:app", "POST", "/echo", "--data", f"@{body}", "--json")
    assert json.loads(result.stdout) == {
        "status": 200,
        "headers": [["content-type", "text/plain; charset=utf-8"]],
        "body": "42",
        "isBase64Encoded": False,
    }


def test_invoke_binary_bodies_as_base64_json() -> None:
    result = run("invoke", "tests.apps:app", "GET", "/binary", "--mode", "fc3", "--json")
    assert json.loads(result.stdout)["isBase64Encoded"] is True


def test_invoke_sends_a_host_as_clients_do_and_the_one_given(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["invoke", "tests.apps:app", "GET", "/hello", "--json"]) == 0
    assert json.loads(json.loads(capsys.readouterr().out)["body"])["url"] == (
        "http://localhost/hello"
    )
    argv = ["invoke", "tests.apps:app", "GET", "/hello", "-H", "Host: api.example.com", "--json"]
    assert main(argv) == 0
    assert json.loads(json.loads(capsys.readouterr().out)["body"])["url"] == (
        "http://api.example.com/hello"
    )


def test_invoke_exits_non_zero_on_5xx() -> None:
    result = run("invoke", "tests.apps:app", "GET", "/boom")
    assert result.returncode == 1
    assert result.stdout.startswith("HTTP 500 Internal Server Error\n")


def test_invoke_web_mode_under_a_prefix() -> None:
    result = run("invoke", "tests.apps:app", "GET", "/hello", "--mode", "web", "--prefix", PREFIX)
    assert result.returncode == 0
    assert json.loads(result.stdout.split("\n\n", 1)[1])["root_path"] == PREFIX


def test_invoke_an_event_file(tmp_path: Path) -> None:
    from fc_bridge.local.emulator import Invocation, http_event

    event = tmp_path / "event.json"
    event.write_bytes(http_event(Invocation("GET", "/hello?x=1", [("Host", "a.fcapp.run")])))
    result = run("invoke", "tests.apps:app", "--mode", "fc3", "--event", str(event))
    assert result.returncode == 0
    assert json.loads(result.stdout.split("\n\n", 1)[1])["url"] == "https://a.fcapp.run/hello?x=1"


def test_invoke_a_non_http_event_prints_what_on_event_returned(tmp_path: Path) -> None:
    event = tmp_path / "timer.json"
    event.write_text('{"triggerName": "tick", "payload": "p"}')
    result = run(
        "invoke", "tests.apps:with_events", "GET", "/", "--mode", "fc3", "--event", str(event)
    )
    assert (result.returncode, json.loads(result.stdout)) == (0, {"handled": "tick"})


def test_bad_header_syntax_is_one_line() -> None:
    result = run("invoke", "tests.apps:app", "GET", "/", "-H", "no-colon")
    assert result.returncode == 2
    assert result.stderr == "fc-bridge: error: header 'no-colon' must be in format 'Name: value'.\n"


def test_context_options_reach_the_app(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["invoke", "tests.apps:app", "GET", "/hello", "--function-name", "billing", "--json"]
    )
    assert code == 0
    body = json.loads(json.loads(capsys.readouterr().out)["body"])
    assert body["function"] == "billing"


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fc_bridge.local", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.stdout.startswith("fc-bridge ")


def test_load_bridge_in_process_and_its_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fc_bridge import Bridge, TargetError
    from fc_bridge.local.target import load_bridge

    assert load_bridge("tests.apps:handler") is apps.handler
    assert isinstance(load_bridge("tests.apps:app"), Bridge)  # "" is on sys.path by now
    (tmp_path / "needs_dep.py").write_text("import no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        TargetError, match=r"^Could not import module \"needs_dep\": No module named 'no_such_dep"
    ):
        load_bridge("needs_dep:app")
    with pytest.raises(TargetError, match=r"is neither an ASGI app .*\(got function\)"):
        load_bridge("tests.apps:wsgi_style")


def test_serve_without_uvicorn_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve", "tests.apps:app"]) == 2
    assert capsys.readouterr().err == (
        "fc-bridge: error: serve needs uvicorn: pip install 'fc-bridge[local]'\n"
    )


def test_an_address_that_cannot_be_bound_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "tests.apps:app", "--host", "203.0.113.1", "--port", "9"]) == 2
    assert capsys.readouterr().err == (
        "fc-bridge: error: cannot listen on 203.0.113.1:9: Cannot assign requested address.\n"
    )


def test_reload_rebuilds_the_front_end_from_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from fc_bridge.local.cli import RELOAD_OPTIONS, reloaded_app
    from fc_bridge.local.frontend import EmulatedFC

    options = {
        "target": "tests.apps:app",
        "mode": "fc3",
        "prefix": PREFIX,
        "concurrency": 3,
        "function_name": "reloaded",
        "region": None,
        "account_id": None,
        "memory": None,
        "timeout": None,
    }
    monkeypatch.setenv(RELOAD_OPTIONS, json.dumps(options))
    front = reloaded_app()
    assert isinstance(front, EmulatedFC)
    assert (front.mode, front.prefix, front.concurrency) == ("fc3", PREFIX, 3)
    assert front.function.name == "reloaded"


def test_invoke_writes_a_binary_body_as_it_is_when_piped() -> None:
    result = subprocess.run(
        [COMMAND, "invoke", "tests.apps:app", "GET", "/binary"], capture_output=True, cwd=ROOT
    )
    assert result.returncode == 0
    assert result.stdout.endswith(b"\n\n" + bytes(range(256)))


def test_invoke_never_writes_a_binary_body_to_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["invoke", "tests.apps:app", "GET", "/binary"]) == 0
    assert capsys.readouterr().out.endswith(
        "\n\n[binary body of 256 bytes not shown: use --output FILE or --json]\n"
    )


def test_invoke_writes_the_body_to_a_file_with_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "body.bin"
    assert main(["invoke", "tests.apps:app", "GET", "/binary", "-o", str(out)]) == 0
    assert out.read_bytes() == bytes(range(256))
    assert capsys.readouterr().out.endswith(f"\n\n[256 bytes written to {out}]\n")


@pytest.mark.parametrize(("fail", "code"), [(False, 0), (True, 1)])
def test_invoke_exits_1_on_a_4xx_with_fail(
    fail: bool, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["invoke", "tests.apps:app", "GET", "/missing", *(["--fail"] if fail else [])]
    assert main(argv) == code
    assert capsys.readouterr().out.startswith("HTTP 404 Not Found\n")


def test_invoke_raw_prints_what_the_fc2_handler_gave_fc(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["invoke", "tests.apps:app", "GET", "/binary", "--raw"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert (raw["status"], raw["headers"]) == (
        "200 OK",
        [["content-type", "application/octet-stream"]],
    )
    assert base64.b64decode(raw["body"]) == bytes(range(256))
    assert main(["invoke", "tests.apps:app", "GET", "/boom", "--raw"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "500 Internal Server Error"


def test_invoke_raw_prints_fc3s_response_dict(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["invoke", "tests.apps:app", "GET", "/binary", "--mode", "fc3", "--raw"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert (raw["statusCode"], raw["isBase64Encoded"]) == (200, True)
    assert base64.b64decode(raw["body"]) == bytes(range(256))
    assert main(["invoke", "tests.apps:app", "GET", "/boom", "--mode", "fc3", "--raw"]) == 1
    assert json.loads(capsys.readouterr().out)["statusCode"] == 500


def test_an_event_stands_alone_and_implies_fc3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fc_bridge.testing import events

    event = tmp_path / "event.json"
    event.write_bytes(events.http("GET", "/hello"))
    assert main(["invoke", "tests.apps:app", "--event", str(event), "--raw"]) == 0
    assert json.loads(capsys.readouterr().out)["statusCode"] == 200


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["GET", "/", "--event", "e.json", "--mode", "fc2"],
            "--event is an FC 3.0 event: use it with --mode fc3, not fc2.",
        ),
        (["GET"], "METHOD and PATH are required (or --event FILE)."),
        ([], "METHOD and PATH are required (or --event FILE)."),
    ],
)
def test_invoke_argument_mistakes_get_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["invoke", "tests.apps:app", *argv])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"fc-bridge invoke: error: {message}\n"


@pytest.mark.parametrize("reload", [False, True])
def test_serve_hands_uvicorn_the_front_end_and_fcs_options(
    monkeypatch: pytest.MonkeyPatch, reload: bool
) -> None:
    import uvicorn

    from fc_bridge.local.cli import RELOAD_OPTIONS
    from fc_bridge.local.frontend import EmulatedFC

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append((app, options)))
    monkeypatch.delenv(RELOAD_OPTIONS, raising=False)
    port = str(free_port())
    argv = ["serve", "tests.apps:app", "--port", port, "--concurrency", "2"]
    assert main(argv + (["--reload"] if reload else [])) == 0
    [(app, options)] = calls
    assert options["port"] == int(port)
    assert options["lifespan"] == "on"  # the front end runs FC's initializer and pre_stop
    assert options["server_header"] is False  # FC sends its own
    assert options["proxy_headers"] is False  # the bridge's forwarded=n decides
    if reload:
        assert app == "fc_bridge.local.cli:reloaded_app"
        assert (options["factory"], options["reload"]) == (True, True)
        assert json.loads(os.environ[RELOAD_OPTIONS])["concurrency"] == 2
    else:
        assert isinstance(app, EmulatedFC)
        assert app.concurrency == 2


def test_serve_listens_where_fc_says_in_fc_custom_listen_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    port = free_port()
    monkeypatch.setenv("FC_CUSTOM_LISTEN_PORT", str(port))
    monkeypatch.setenv("PORT", "1")  # FC's variable comes first
    assert main(["serve", "tests.apps:app"]) == 0
    assert calls[0]["port"] == port


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "argument --port: '70000' is not a port number from 1 to 65535"),
        (["--port", "http"], "argument --port: 'http' is not a port number from 1 to 65535"),
        (["--memory", "-5"], "argument --memory: '-5' is not a whole number above 0"),
        (["--timeout", "0"], "argument --timeout: '0' is not a whole number above 0"),
        (["--concurrency", "0"], "argument --concurrency: '0' is not a whole number above 0"),
    ],
)
def test_bad_numbers_get_one_line_naming_the_value_and_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "tests.apps:app", *argv])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"fc-bridge serve: error: {message}"
