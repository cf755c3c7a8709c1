"""``fc-bridge package``: a zip FC's Python runtime takes, built without hand-work.

The example's zip is built offline, from the wheels ``make test`` downloads into
``.wheelhouse/cp312`` beforehand, and then imported by a fresh CPython 3.12 that sees only the
unpacked zip (``-I -S``: no site-packages, no environment) and cannot write bytecode (``-B``:
FC's /code is read-only), as FC's runtime would.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest

from fc_bridge.local.cli import main
from fc_bridge.local.package import LIMIT_API, LIMIT_UPLOAD, Progress, describe_size

from .conftest import free_port, wait_for_http

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = ROOT / ".wheelhouse"


def python(version: str) -> str:
    """A CPython as FC's runtime of that version runs (pyenv's, which CI requires)."""
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python")) or [
        shutil.which(f"python{version}") or ""
    ]
    assert found[-1], f"no CPython {version} on this machine (pyenv install {version})"
    return found[-1]


ANSWER = r"""
import io, json, sys
sys.path.insert(0, sys.argv[1])
import main

class Context:
    request_id = "zip-1"
    account_id = "123"
    region = "cn-hangzhou"

environ = {
    "REQUEST_METHOD": "GET", "PATH_INFO": "/items/1", "QUERY_STRING": "q=x",
    "fc.request_uri": "/2016-08-15/proxy/svc/fn/items/1?q=x", "CONTENT_LENGTH": "0",
    "CONTENT_TYPE": "application/octet-stream", "wsgi.input": io.BytesIO(b""),
    "wsgi.url_scheme": "http", "SERVER_NAME": "FCRUNTIME", "SERVER_PORT": "9000",
    "fc.context": Context(),
}
statuses = []
def start_response(status, headers, exc_info=None):
    statuses.append(status)
body = b"".join(main.handler(environ, start_response))
event = json.dumps({
    "version": "v1", "rawPath": "/items/2", "body": "", "isBase64Encoded": False,
    "headers": {}, "queryParameters": {"q": "y"},
    "requestContext": {"domainName": "f.cn-hangzhou.fcapp.run", "requestId": "zip-2",
        "http": {"method": "GET", "path": "/items/2", "sourceIp": "1.2.3.4"}},
}).encode()
answer = main.handler(event, Context())
print(json.dumps({
    "fc2": [statuses[0], json.loads(body)],
    "fc3": [answer["statusCode"], json.loads(answer["body"])],
    "paths": sorted({p.split("/site-packages")[0] for p in sys.path if "site-packages" in p}),
    "local": sorted(m for m in sys.modules if m.startswith(("uvicorn", "httpx", "rich"))),
}))
"""


def compiled_from(stderr: str, code: Path) -> dict[str, list[str]]:
    """From ``python -v``'s stderr: the modules under ``code`` loaded from bytecode ("pyc")
    and those compiled from their source ("py")."""
    loaded: dict[str, list[str]] = {"pyc": [], "py": []}
    for line in stderr.splitlines():
        # "# code object from '<bytecode>'" or "# code object from <source>"
        if line.startswith((f"# code object from {code}/", f"# code object from '{code}/")):
            path = line.split("from ", 1)[1].strip("'")
            loaded["pyc" if path.endswith(".pyc") else "py"].append(path)
    return loaded


def pyc_name(source: str, tag: str) -> str:
    """Where Python ``tag`` looks for a source's bytecode: ``a/__pycache__/b.<tag>.pyc``."""
    path = PurePosixPath(source)
    return str(path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc").removeprefix("./")


def archive_flags(pyc: Path) -> int:
    """The flags of a bytecode file's header (PEP 552): 0b11 checked hash, 0b01 unchecked."""
    return int.from_bytes(pyc.read_bytes()[4:8], "little")


def test_the_example_packages_into_a_zip_that_answers_in_a_clean_python(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (WHEELHOUSE / ".downloaded").exists(), "make test downloads the wheels first"
    zip_path = tmp_path / "fn.zip"
    argv = ["package", str(ROOT / "examples" / "fastapi_app"), "-o", str(zip_path)]
    argv += ["--runtime", "python3.12", "--find-links", str(WHEELHOUSE / "cp312"), "--no-index"]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"{zip_path}: {describe_size(zip_path.stat().st_size)}\n"
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "code")
    assert {"main.py", "fc_bridge/__init__.py", "fc_bridge/_bridge.py"} <= set(names)
    assert any(n.startswith("fastapi/") for n in names)
    assert any(n.startswith("pydantic_core/") and "cpython-312-x86_64" in n for n in names)
    # Every module's bytecode for FC's Python, checked against its source by hash, not time.
    sources = sorted(n for n in names if n.endswith(".py"))
    bytecode = sorted(n for n in names if n.endswith(".pyc"))
    assert bytecode == sorted(pyc_name(n, "cpython-312") for n in sources)
    assert {archive_flags(tmp_path / "code" / n) for n in bytecode} == {0b11}
    assert not [n for n in names if n.startswith(("bin/", "fc_bridge-", "tests/", "s."))]
    done = subprocess.run(
        [python("3.12"), "-I", "-S", "-B", "-v", "-c", ANSWER, str(tmp_path / "code")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ["PATH"]},
    )
    assert done.returncode == 0, done.stderr
    loaded = compiled_from(done.stderr, tmp_path / "code")
    assert loaded["py"] == [] and len(loaded["pyc"]) > 100, loaded
    assert f"{tmp_path}/code/fc_bridge/__pycache__/_bridge.cpython-312.pyc" in loaded["pyc"]
    report = json.loads(done.stdout)
    assert report["fc2"] == ["200 OK", {"item_id": 1, "q": "x", "limit": 10}]
    assert report["fc3"] == [200, {"item_id": 2, "q": "y", "limit": 10}]
    assert report["paths"] == [] and report["local"] == []


WEB = ["--mode", "web", "--host", "127.0.0.1"]


def test_the_web_function_zip_serves_the_example_as_fc_runs_it(tmp_path: Path) -> None:
    # What s.web.yaml deploys: `python3 -m fc_bridge.local serve main:handler --mode web`,
    # from the unpacked zip, on a Python without site-packages, on FC's port variable.
    zip_path = tmp_path / "web.zip"
    example = ROOT / "examples" / "fastapi_app"
    argv = ["package", str(example), "-o", str(zip_path), "--runtime", "python3.10"]
    argv += ["-r", str(example / "requirements-web.txt")]
    argv += ["--find-links", str(WHEELHOUSE / "cp310"), "--no-index"]
    assert main(argv) == 0
    code = tmp_path / "code"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(code)
    port = free_port()
    server = subprocess.Popen(
        [python("3.10"), "-S", "-m", "fc_bridge.local", "serve", "main:handler", *WEB],
        cwd=code,
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(code),
            "FC_CUSTOM_LISTEN_PORT": str(port),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url)
        assert httpx.post(f"{url}/initialize", timeout=10).status_code == 200
        created = httpx.post(f"{url}/items", json={"name": "tea", "price": 2}, timeout=10)
        assert created.status_code == 201
        assert httpx.get(f"{url}/items", timeout=10).json()[0]["name"] == "tea"
        assert httpx.get(f"{url}/pre-stop", timeout=10).status_code == 200
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    assert "Application startup complete" in output, output


def test_only_the_code_goes_in_and_without_requirements_no_pip_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "fn"
    for name in (
        "main.py",
        "app/__init__.py",
        "app/data.json",
        "app/__pycache__/x.cpython-311.pyc",
        "tests/test_main.py",
        "test_main.py",
        "conftest.py",
        ".git/HEAD",
        ".venv/pyvenv.cfg",
        "env2/pyvenv.cfg",
        "env2/lib/x.py",
        "node_modules/a.js",
        ".pytest_cache/x",
        "old.zip",
    ):
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n")
    output = source / "function.zip"  # inside the code directory: never zipped into itself
    assert main(["package", str(source), "-o", str(output), "--runtime", "python3.10"]) == 0
    with zipfile.ZipFile(output) as archive:
        names = archive.namelist()
    assert [n for n in names if not n.startswith("fc_bridge/")] == [
        "__pycache__/main.cpython-310.pyc",
        "app/__init__.py",
        "app/__pycache__/__init__.cpython-310.pyc",
        "app/data.json",
        "main.py",
    ]
    assert "fc_bridge/local/cli.py" in names  # what `fc-bridge serve --mode web` runs
    other = source / "bundle.fcpkg"  # whatever its name
    assert main(["package", str(source), "-o", str(other)]) == 0
    assert main(["package", str(source), "-o", str(other)]) == 0  # not packed into itself
    with zipfile.ZipFile(other) as archive:
        assert "bundle.fcpkg" not in archive.namelist()


def test_the_api_names_the_runtimes_it_knows(tmp_path: Path) -> None:
    from fc_bridge.local.package import PackageError, build_package

    with pytest.raises(PackageError, match=r"one of python3\.10, python3\.12, got 'python3\.9'"):
        build_package(tmp_path, tmp_path / "f.zip", "python3.9")


def test_fc_bridge_itself_is_left_out_of_the_requirements(tmp_path: Path) -> None:
    source = tmp_path / "fn"
    source.mkdir()
    (source / "main.py").write_text("")
    (source / "requirements.txt").write_text("# only us\nfc-bridge[local]>=0.1\nFC_Bridge\n")
    empty = tmp_path / "wheels"
    empty.mkdir()
    argv = ["package", str(source), "-o", str(tmp_path / "f.zip"), "--find-links", str(empty)]
    assert main([*argv, "--no-index"]) == 0  # nothing left to install: pip is not run


def test_a_dependency_without_a_wheel_is_named_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "fn"
    source.mkdir()
    (source / "requirements.txt").write_text("fc-bridge\nno-such-package-for-fc==1.0\n")
    empty = tmp_path / "wheels"
    empty.mkdir()
    output = tmp_path / "f.zip"
    argv = ["package", str(source), "-o", str(output), "--find-links", str(empty), "--no-index"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "fc-bridge: error: no-such-package-for-fc==1.0 has no wheel for Linux x86_64 and "
        "Python 3.12 (FC builds nothing from source): choose a version or a package that "
        "has one.\n"
    )
    assert not output.exists() and not list(tmp_path.glob("*.partial"))


def test_other_pip_failures_give_pips_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "fn"
    source.mkdir()
    (source / "requirements.txt").write_text("this is not a requirement !!\n")
    assert main(["package", str(source), "-o", str(tmp_path / "f.zip"), "--no-index"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("fc-bridge: error: pip could not install requirements.txt: ")
    assert error.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing-dir"], "the code directory 'missing-dir' does not exist."),
        (["{src}", "-r", "nope.txt"], "the requirements file 'nope.txt' does not exist."),
    ],
)
def test_bad_paths_get_one_sentence(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{src}", str(tmp_path)) for a in argv]
    assert main(["package", *argv, "-o", str(tmp_path / "f.zip")]) == 2
    assert capsys.readouterr().err == f"fc-bridge: error: {message}\n"


def test_an_unknown_runtime_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["package", ".", "--runtime", "python2.7"])
    assert "invalid choice: 'python2.7'" in capsys.readouterr().err


def test_the_size_line_says_which_upload_fits() -> None:
    assert describe_size(LIMIT_API).startswith("75.0 MB, within FC's limits")
    assert "not the API/SDK" in describe_size(LIMIT_API + 1)
    assert "over FC's limit" in describe_size(LIMIT_UPLOAD + 1)


def test_progress_shows_on_a_terminal(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from fc_bridge.local.package import PackageError, build_package

    source = tmp_path / "fn"
    source.mkdir()
    (source / "main.py").write_text("")
    (source / "requirements.txt").write_text("fc-bridge\nno-such-package-for-fc\n")
    progress = Progress(enabled=True)
    screen = io.StringIO()
    progress.console = Console(file=screen, force_terminal=True, width=100)
    output = tmp_path / "f.zip"
    with pytest.raises(PackageError, match="no-such-package-for-fc"):
        build_package(source, output, "python3.12", pip_options=["--no-index"], progress=progress)
    assert "done" not in screen.getvalue()  # the failed step is not reported done
    (source / "requirements.txt").write_text("fc-bridge\n")
    build_package(source, output, "python3.12", progress=progress)
    shown = screen.getvalue()
    assert "Installing requirements.txt for python3.12 (Linux x86_64)" in shown
    assert "\x1b[32mdone\x1b[0m Installing" in shown
    assert "\x1b[32mdone\x1b[0m Compiling the bytecode for Python" in shown
    assert "Writing f.zip" in shown


def test_progress_is_quiet_off_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "main.py").write_text("")
    assert main(["package", str(tmp_path), "-o", str(tmp_path / "out" / "f.zip")]) == 0
    assert capsys.readouterr().err == ""


def other_runtime() -> tuple[str, str]:
    """A runtime whose Python is not the one running the tests, and its wheelhouse."""
    if sys.version_info[:2] == (3, 10):
        return "python3.12", "cp312"
    return "python3.10", "cp310"


PIP_HERE = (
    "pip runs under this Python {here}, so requirements that depend on the Python version "
    '(markers such as python_version < "3.11") are chosen for it'
)
NO_BYTECODE = "the zip has no bytecode, so every cold start on FC compiles each module from source"


@pytest.mark.parametrize(
    ("requirements", "compile_", "costs"),
    [
        (True, True, [PIP_HERE, NO_BYTECODE]),
        (True, False, [PIP_HERE]),
        (False, True, [NO_BYTECODE]),
        (False, False, []),
    ],
)
def test_without_the_runtimes_python_a_warning_says_what_it_costs(
    requirements: bool,
    compile_: bool,
    costs: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime, wheels = other_runtime()
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    (tmp_path / "main.py").write_text("")
    if requirements:
        (tmp_path / "requirements.txt").write_text("idna\n")
    argv = ["package", str(tmp_path), "-o", str(tmp_path / "f.zip"), "--runtime", runtime]
    argv += ["--find-links", str(WHEELHOUSE / wheels), "--no-index"]
    with caplog.at_level(logging.WARNING, logger="fc_bridge.package"):
        assert main([*argv] if compile_ else [*argv, "--no-compile"]) == 0
    version = runtime[6:]
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    expected = [
        f"No Python {version} with pip on this machine: "
        + "; and ".join(costs).format(here=here)
        + f"; pass --python PATH to use a Python {version}."
    ]
    assert [r.getMessage() for r in caplog.records] == (expected if costs else [])
    with zipfile.ZipFile(tmp_path / "f.zip") as archive:
        names = archive.namelist()
    assert ("idna/__init__.py" in names) is requirements
    assert not [n for n in names if n.endswith(".pyc")]


def test_bytecode_is_checked_against_its_source_so_an_edit_after_packaging_runs(
    tmp_path: Path,
) -> None:
    # FC's console edits the unpacked code in place: the edited source must win over the
    # bytecode packed beside it (checked-hash bytecode; unchecked would hide the edit).
    source = tmp_path / "fn"
    source.mkdir()
    (source / "main.py").write_text("answer = 'packed'\n")
    assert main(["package", str(source), "-o", str(tmp_path / "f.zip")]) == 0  # python3.12
    code = tmp_path / "code"
    with zipfile.ZipFile(tmp_path / "f.zip") as archive:
        archive.extractall(code)
    tag = "cpython-312"
    assert archive_flags(code / pyc_name("main.py", tag)) == 0b11
    program = "import sys; sys.path.insert(0, sys.argv[1]); import main; print(main.answer)"
    run = [python("3.12"), "-I", "-S", "-B", "-v", "-c", program, str(code)]
    done = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert done.stdout == "packed\n"
    assert compiled_from(done.stderr, code) == {
        "pyc": [str(code / pyc_name("main.py", tag))],
        "py": [],
    }
    (code / "main.py").write_text("answer = 'edited'\n")
    done = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert done.stdout == "edited\n"
    assert compiled_from(done.stderr, code) == {"pyc": [], "py": [str(code / "main.py")]}


def test_no_compile_leaves_the_bytecode_out(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    assert main(["package", str(tmp_path), "-o", str(tmp_path / "f.zip"), "--no-compile"]) == 0
    with zipfile.ZipFile(tmp_path / "f.zip") as archive:
        names = archive.namelist()
    assert "main.py" in names and not [n for n in names if n.endswith(".pyc")]


def test_a_module_that_does_not_compile_for_the_runtimes_python_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "main.py").write_text("import shapes\n")
    (tmp_path / "shapes.py").write_text("x = 1\ntype Point = tuple[int, int]\n")  # 3.12 syntax
    argv = ["package", str(tmp_path), "-o", str(tmp_path / "f.zip"), "--runtime", "python3.10"]
    with caplog.at_level(logging.WARNING, logger="fc_bridge.package"):
        assert main(argv) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "shapes.py does not compile for Python 3.10 (SyntaxError: invalid syntax, line 2): "
        "FC would fail to import it."
    ]
    with zipfile.ZipFile(tmp_path / "f.zip") as archive:
        names = archive.namelist()
    assert "shapes.py" in names and "__pycache__/main.cpython-310.pyc" in names
    assert not [n for n in names if n.startswith("__pycache__/shapes.")]


def test_a_python_that_cannot_compile_gets_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A Python 3.12 with pip that fails to write the bytecode (a full disk, say).
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *"import sys, pip"*) echo 3.12;; '
        '*) echo "Traceback (most recent call last):" >&2; '
        'echo "OSError: [Errno 28] No space left on device" >&2; exit 1;; esac\n'
    )
    fake.chmod(0o755)
    (tmp_path / "main.py").write_text("")
    argv = ["package", str(tmp_path), "-o", str(tmp_path / "f.zip"), "--python", str(fake)]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"fc-bridge: error: {fake} could not compile the code: "
        "OSError: [Errno 28] No space left on device\n"
    )
    assert not (tmp_path / "f.zip").exists()


@pytest.mark.parametrize("given", ["this", "missing"])
def test_a_python_of_another_version_is_refused(
    given: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime, _ = other_runtime()
    interpreter = sys.executable if given == "this" else str(tmp_path / "no-python")
    (tmp_path / "requirements.txt").write_text("idna\n")
    argv = ["package", str(tmp_path), "-o", str(tmp_path / "f.zip"), "--runtime", runtime]
    assert main([*argv, "--python", interpreter]) == 2
    assert capsys.readouterr().err == (
        f"fc-bridge: error: --python {interpreter!r} is not a Python {runtime[6:]} with pip.\n"
    )


def test_a_chosen_python_of_the_runtimes_version_runs_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "requirements.txt").write_text("-r more.txt\n-c pins.txt\n")
    (tmp_path / "more.txt").write_text("idna  # the one dependency\n-r requirements.txt\n")
    (tmp_path / "pins.txt").write_text("idna>=2\n")
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    argv = ["package", str(tmp_path), "-o", str(tmp_path / "f.zip")]
    argv += ["--runtime", "python3.12" if version == "3.12" else "python3.10"]
    argv += ["--python", python("3.12" if version == "3.12" else "3.10")]
    wheels = "cp312" if version == "3.12" else "cp310"
    monkeypatch.chdir(WHEELHOUSE)  # --find-links relative to here, where pip does not run
    assert main([*argv, "--find-links", wheels, "--no-index"]) == 0
    with zipfile.ZipFile(tmp_path / "f.zip") as archive:
        assert "idna/__init__.py" in archive.namelist()


def test_pip_runs_under_this_python_when_it_is_the_runtimes_version() -> None:
    from fc_bridge.local.package import _runtime_python

    assert _runtime_python(f"{sys.version_info[0]}.{sys.version_info[1]}", None) == sys.executable


@pytest.mark.parametrize(
    ("given", "to_pip"),
    [("wheels", "--find-links={cwd}/wheels"), ("https://wheels.example/", None)],
)
def test_find_links_reaches_pip_as_a_directory_made_absolute_or_as_a_url(
    given: str, to_pip: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Sequence[str]] = []

    def build_package(*args: Any, pip_options: Sequence[str], **kwargs: Any) -> int:
        seen.append(pip_options)
        return 1

    monkeypatch.setattr("fc_bridge.local.cli.build_package", build_package)
    monkeypatch.chdir(tmp_path)
    assert main(["package", str(tmp_path), "--find-links", given, "--no-index"]) == 0
    expected = to_pip.format(cwd=tmp_path) if to_pip else f"--find-links={given}"
    assert seen == [[expected, "--no-index"]]
