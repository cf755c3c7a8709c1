"""Run the README's shell blocks as a new user would paste them, in a fresh clone.

Every ```sh block runs, in order, in one bash session started in a fresh clone of this
repository. A line ending in ``# ci: skip (why)`` is skipped (it needs FC itself, say) and says
so; a line marked ``# ci: serve`` starts a server: it must answer HTTP on its port (``--port N``,
else 9000) within the time allowed, and is then stopped. Any other failing line fails the run.

    python3 .ci/readme.py [README.md]
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
MARK = re.compile(r"#\s*ci:\s*(skip|serve)\b(.*)$")

PREAMBLE = r"""
set -euo pipefail
answers() {  # answers PORT: anything listening there speaks HTTP
    python3 - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
}
serve_check() {  # serve_check PORT COMMAND: the server answers HTTP, then it is stopped
    local port="$1"; shift
    setsid bash -c "$*" > "serve-$port.log" 2>&1 &
    local pid=$!
    local deadline=$((SECONDS + 600))
    until answers "$port"; do
        if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -gt "$deadline" ]; then
            echo "README: '$*' did not serve on port $port:"; cat "serve-$port.log"; exit 1
        fi
        sleep 1
    done
    echo "README: '$*' serves on port $port"
    kill -TERM -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
"""


def commands(readme: str) -> list[str]:
    """The README's shell lines, continuation lines joined."""
    lines: list[str] = []
    for block in BLOCK.findall(readme):
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            lines.append(pending + line)
            pending = ""
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def script(lines: list[str]) -> str:
    out = [PREAMBLE]
    for line in lines:
        mark = MARK.search(line)
        command = line[: mark.start()].strip() if mark else line.strip()
        if mark is None:
            out.append(f"echo {shlex.quote('README$ ' + command)}")
            out.append(command)
        elif mark.group(1) == "skip":
            out.append(f"echo {shlex.quote('README: skipped ' + command + mark.group(2))}")
        else:
            port = re.search(r"--port\s+(\d+)", command)
            number = port.group(1) if port else "9000"
            out.append(f"serve_check {number} {shlex.quote(command)}")
    return "\n".join(out) + "\n"


def main() -> int:
    readme = (Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "README.md").read_text()
    with tempfile.TemporaryDirectory(prefix="readme-") as work:
        clone = Path(work) / "fc-bridge"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        done = subprocess.run(["bash", "-c", script(commands(readme))], cwd=clone, timeout=3600)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
