"""``fc-bridge package``: a function's code package, as FC's Python runtimes take it.

The zip holds the user's code (without caches, virtual environments, tests or ``__pycache__``),
the dependencies in its ``requirements.txt`` installed for Linux x86_64 and the runtime's
Python (wheels only: FC's machines build nothing), and fc-bridge itself, copied from the
running installation because it may not be on any package index; with the bytecode of every
module, compiled by a Python of the runtime's version.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._errors import FCBridgeError

logger = logging.getLogger("fc_bridge.package")

# FC's Python runtimes and the Python each runs (FC 3.0 and FC 2.0 both offer these).
RUNTIMES = {"python3.10": "3.10", "python3.12": "3.12"}
# Linux x86_64 wheels: manylinux2014 (glibc 2.17) and up to glibc 2.28, FC's oldest image.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
# FC's code-size limits (FC "Limits"): through the console, Serverless Devs or OSS, and
# through the API/SDK, where the zip travels base64-encoded (4/3 of its size) within 100 MB.
LIMIT_UPLOAD = 500 * 1024 * 1024
LIMIT_API = 100 * 1024 * 1024 * 3 // 4

SKIPPED_DIRECTORIES = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        ".idea",
        ".vscode",
        ".s",  # Serverless Devs' own cache
        "node_modules",
        "tests",
        "test",
    }
)
SKIPPED_FILES = (
    "*.pyc",
    "*.pyo",
    "test_*.py",
    "*_test.py",
    "conftest.py",
    ".DS_Store",
    "*.zip",
    "s.yaml",  # Serverless Devs' deployment files: they describe the package, not its code
    "s.*.yaml",
)
# FC unpacks the zip into /code, which is read-only: Python cannot cache the bytecode it
# compiles there, so without it in the zip every cold start compiles every module from source.
# Checked-hash bytecode (PEP 552) is valid whatever times the unpacked files get, and a source
# edited after packaging (in FC's console) is compiled afresh instead of hidden by stale bytecode.
# Run under the runtime's Python with -I: its cache tag, no PYTHONPYCACHEPREFIX.
_COMPILE = r"""
import json, py_compile, sys
from importlib.util import cache_from_source
compiled, failed = [], []
for name, path in json.load(sys.stdin):
    cached = cache_from_source(name)
    try:
        py_compile.compile(path, cfile=sys.argv[1] + "/" + cached, dfile=name, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    except py_compile.PyCompileError as exc:
        line = getattr(exc.exc_value, "lineno", None)
        reason = f"{exc.exc_type_name}: {getattr(exc.exc_value, 'msg', exc.exc_value)}"
        failed.append([name, reason + (f", line {line}" if line else "")])
    else:
        compiled.append(cached)
json.dump({"compiled": compiled, "failed": failed}, sys.stdout)
"""
_SELF = re.compile(r"^\s*fc[-_.]bridge\s*($|[\[<>=!~;#\s])", re.IGNORECASE)
_NO_WHEEL = re.compile(r"No matching distribution found for (\S+)")


class PackageError(FCBridgeError):
    """The code package cannot be built: one sentence naming what is wrong."""


def build_package(
    source: Path,
    output: Path,
    runtime: str,
    *,
    requirements: Path | None = None,
    pip_options: Sequence[str] = (),
    python: str | None = None,
    bytecode: bool = True,
    progress: Any = None,
) -> int:
    """Write the code package of ``source`` for ``runtime`` to ``output``; its size in bytes.

    ``requirements`` defaults to ``source/requirements.txt`` when there is one;
    ``pip_options`` go to pip as they are (``--find-links DIR --no-index`` offline, say);
    ``python`` is the interpreter to run pip and compile with (default: one of the runtime's
    version); ``bytecode=False`` leaves the bytecode out; ``progress`` is a :class:`Progress`
    (or None for none).
    """
    if runtime not in RUNTIMES:
        raise PackageError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}.")
    if not source.is_dir():
        raise PackageError(f"the code directory {str(source)!r} does not exist.")
    if requirements is None and (source / "requirements.txt").is_file():
        requirements = source / "requirements.txt"
    if requirements is not None and not requirements.is_file():
        raise PackageError(f"the requirements file {str(requirements)!r} does not exist.")
    progress = progress or Progress(enabled=False)
    output = output.resolve()
    version = RUNTIMES[runtime]
    interpreter = _runtime_python(version, python)
    if interpreter is None and (requirements is not None or bytecode):
        _warn_no_python(version, requirements is not None, bytecode)
    with tempfile.TemporaryDirectory(prefix="fc-bridge-package-") as work:
        staging = Path(work) / "package"
        staging.mkdir()
        if requirements is not None:
            with progress.step(f"Installing {requirements.name} for {runtime} (Linux x86_64)"):
                pip = interpreter or sys.executable
                _install(requirements, staging, version, Path(work), pip_options, pip)
        files = [*_code_files(source, output), *_bridge_files(), *_files_below(staging)]
        if bytecode and interpreter is not None:
            with progress.step(f"Compiling the bytecode for Python {version}"):
                files += _compile(files, version, interpreter, Path(work))
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(output.name + ".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for name, path in progress.track(sorted(files), f"Writing {output.name}"):
                info = zipfile.ZipInfo.from_file(path, name)
                info.compress_type = zipfile.ZIP_DEFLATED
                with path.open("rb") as data, archive.open(info, "w") as entry:
                    shutil.copyfileobj(data, entry, 1 << 20)
        partial.replace(output)
    return output.stat().st_size


def describe_size(size: int) -> str:
    """The zip's size against FC's code-size limits, in one line."""
    if size <= LIMIT_API:
        verdict = "within FC's limits for every way of uploading"
    elif size <= LIMIT_UPLOAD:
        verdict = "upload it through the console, Serverless Devs or OSS, not the API/SDK"
    else:
        verdict = "over FC's limit: move dependencies to a layer, or use a container image"
    limits = "500 MB; 75 MB through the API/SDK, which sends it base64-encoded"
    return f"{size / (1024 * 1024):.1f} MB, {verdict} ({limits})."


def _runtime_python(version: str, chosen: str | None) -> str | None:
    """An interpreter of the runtime's Python version with pip, or None if there is none.

    pip evaluates environment markers (``exceptiongroup; python_version < "3.11"``) for the
    Python running it, whatever ``--python-version`` says; only platform tags follow the
    target. And bytecode is only ever read by the Python version that wrote it.
    """
    if chosen is not None:
        if _version_of(chosen) != version:
            raise PackageError(f"--python {chosen!r} is not a Python {version} with pip.")
        return chosen
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates = [
        shutil.which(f"python{version}"),
        *glob.glob(f"{root}/versions/{version}.*/bin/python"),
    ]
    for candidate in filter(None, candidates):
        if _version_of(candidate) == version:
            return candidate
    return None


def _warn_no_python(version: str, pip: bool, bytecode: bool) -> None:
    """Say what building the zip without a Python of the runtime's version costs."""
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    costs = []
    if pip:
        costs.append(
            f"pip runs under this Python {here}, so requirements that depend on the Python "
            'version (markers such as python_version < "3.11") are chosen for it'
        )
    if bytecode:
        costs.append(
            "the zip has no bytecode, so every cold start on FC compiles each module from source"
        )
    logger.warning(
        "No Python %s with pip on this machine: %s; pass --python PATH to use a Python %s.",
        version,
        "; and ".join(costs),
        version,
    )


def _version_of(interpreter: str) -> str | None:
    """The ``X.Y`` of an interpreter that has pip, or None."""
    try:
        done = subprocess.run(
            [interpreter, "-c", "import sys, pip; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _install(
    requirements: Path,
    target: Path,
    python: str,
    work: Path,
    pip_options: Sequence[str],
    interpreter: str,
) -> None:
    """pip install ``requirements`` into ``target`` as wheels for FC's Linux and ``python``."""
    kept = _requirement_lines(requirements, set())
    if not kept:
        return
    filtered = work / "requirements.txt"
    filtered.write_text("\n".join(kept) + "\n")
    command = [
        interpreter,
        "-m",
        "pip",
        "install",
        "--target",
        str(target),
        *(f"--platform={platform}" for platform in PLATFORMS),
        "--implementation=cp",
        f"--python-version={python}",
        "--only-binary=:all:",
        "--no-compile",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        *pip_options,
        "-r",
        str(filtered),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=requirements.parent,
        env={**os.environ, "PIP_REQUIRE_VIRTUALENV": "0"},
    )
    if done.returncode != 0:
        missing = _NO_WHEEL.search(done.stderr)
        if missing is not None:
            raise PackageError(
                f"{missing.group(1)} has no wheel for Linux x86_64 and Python {python} "
                "(FC builds nothing from source): choose a version or a package that has one."
            )
        raise PackageError(f"pip could not install {requirements.name}: {_last_line(done.stderr)}")
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts for this machine


_INCLUDE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s+|=)(\S+)$")


def _requirement_lines(requirements: Path, seen: set[Path]) -> list[str]:
    """The requirements, nested ``-r`` files inlined and ``-c`` paths made absolute, without
    fc-bridge itself (the package takes it from this installation) or comments."""
    lines: list[str] = []
    path = requirements.resolve()
    if path in seen:
        return lines
    seen.add(path)
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or _SELF.match(line):
            continue
        include = _INCLUDE.match(line)
        if include is None:
            lines.append(line)
        elif include.group(1) in ("-r", "--requirement"):
            lines += _requirement_lines(path.parent / include.group(2), seen)
        else:
            lines.append(f"--constraint {path.parent / include.group(2)}")
    return lines


def _compile(
    files: list[tuple[str, Path]], version: str, interpreter: str, work: Path
) -> list[tuple[str, Path]]:
    """The bytecode of the ``.py`` files for Python ``version``, as zip names and paths; warns
    of each module that does not compile, which FC would fail to import."""
    sources = [(name, str(path)) for name, path in files if name.endswith(".py")]
    out = work / "bytecode"
    done = subprocess.run(
        [interpreter, "-I", "-c", _COMPILE, str(out)],
        input=json.dumps(sources),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise PackageError(f"{interpreter} could not compile the code: {_last_line(done.stderr)}")
    report = json.loads(done.stdout)
    for name, reason in report["failed"]:
        logger.warning(
            "%s does not compile for Python %s (%s): FC would fail to import it.",
            name,
            version,
            reason,
        )
    return [(name, out / name) for name in report["compiled"]]


def _last_line(stderr: str) -> str:
    """What a failed command said last (its error, after any traceback)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _code_files(source: Path, output: Path) -> Iterator[tuple[str, Path]]:
    """The user's files, as zip names: no caches, environments, tests or earlier zips."""
    for root, directories, files in os.walk(source):
        directories[:] = sorted(
            d
            for d in directories
            if d not in SKIPPED_DIRECTORIES and not (Path(root) / d / "pyvenv.cfg").is_file()
        )
        for name in sorted(files):
            path = Path(root) / name
            if any(fnmatch.fnmatch(name, pattern) for pattern in SKIPPED_FILES):
                continue
            if path.resolve() != output:
                yield path.relative_to(source).as_posix(), path


def _bridge_files() -> Iterator[tuple[str, Path]]:
    """fc-bridge itself, from the installation running this command."""
    package = Path(__file__).resolve().parent.parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield "fc_bridge/" + path.relative_to(package).as_posix(), path


def _files_below(directory: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path.relative_to(directory).as_posix(), path


class Progress:
    """A spinner for the long steps and a bar for writing the zip (rich), on a terminal only."""

    def __init__(self, enabled: bool) -> None:
        self.console: Any = None
        if enabled:
            from rich.console import Console

            self.console = Console(stderr=True)

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        if self.console is None:
            yield
            return
        with self.console.status(what):
            yield
        self.console.print(f"[green]done[/green] {what}")

    def track(self, items: list[Any], what: str) -> Iterator[Any]:
        if self.console is None:
            return iter(items)
        from rich.progress import track

        return iter(track(items, description=what, console=self.console, transient=True))
