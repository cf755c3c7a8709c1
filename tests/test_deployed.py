"""What is deployed stays small: no local tooling, no server or client library, no cycles."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fc_bridge"
# Every top-level module is deployed; local tooling is in the subpackages fc_bridge.local and
# fc_bridge.testing (the clients users import in their tests).
DEPLOYED = sorted(PACKAGE.glob("*.py"))
FORBIDDEN = (
    "fc_bridge.local",
    "fc_bridge.testing",
    "uvicorn",
    "httpx",
    "starlette",
    "fastapi",
    "anyio",
)

APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive(); await send({"type": "lifespan.startup.complete"})
        await receive(); await send({"type": "lifespan.shutdown.complete"}); return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
    await send({"type": "http.response.body", "body": b"deployed"})

from fc_bridge import bridge
handler = bridge(app)
"""

CALLS = {
    "fc2": """
import io
environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "fc.request_uri": "/", "SCRIPT_NAME": "",
           "QUERY_STRING": "", "wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "0"}
out = {}
body = b"".join(handler(environ, lambda status, headers, exc=None: out.setdefault("s", status)))
result = [out["s"], body.decode()]
""",
    "fc3": """
import json
event = json.dumps({
    "rawPath": "/", "headers": {}, "body": "", "isBase64Encoded": False,
    "requestContext": {"requestId": "r", "http": {"method": "GET", "path": "/"}},
}).encode()
answer = handler(event, {"request_id": "r"})
result = [answer["statusCode"], answer["body"]]
""",
    "hooks": """
handler.initializer({"request_id": "init"})
handler.pre_freeze({"request_id": "freeze"})
handler.pre_stop({"request_id": "stop"})
result = ["hooks", "ran"]
""",
    "web": """
import asyncio
from fc_bridge import WebFunction
web = WebFunction(handler)
sent = []
async def main():
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}
    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": "GET", "path": "/", "raw_path": b"/", "query_string": b"",
             "headers": [(b"x-fc-request-id", b"w")], "scheme": "http", "http_version": "1.1",
             "asgi": {"version": "3.0"}, "root_path": "", "client": None, "server": None}
    await web(scope, receive, send)
asyncio.run(main())
result = [sent[0]["status"], sent[1]["body"].decode()]
""",
}


@pytest.mark.parametrize("entry", sorted(CALLS))
def test_each_deployed_entry_point_imports_no_local_tooling(entry: str) -> None:
    code = (
        APP
        + CALLS[entry]
        + (
            "\nimport json, sys\n"
            "print(json.dumps({'result': result, 'modules': sorted(sys.modules)}))\n"
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["result"] in ([200, "deployed"], ["200 OK", "deployed"], ["hooks", "ran"])
    leaked = [
        m for m in report["modules"] if m.split(".")[0] in FORBIDDEN or m.startswith(FORBIDDEN)
    ]
    assert leaked == []


def _runtime_imports(path: Path) -> set[str]:
    """The fc_bridge modules ``path`` imports when it runs (not for type checking only)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    found.add(node.module)
                else:
                    found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fc_bridge"):
                found.add((node.module or "").removeprefix("fc_bridge."))
            elif isinstance(node, ast.Import):
                found.update(
                    alias.name.removeprefix("fc_bridge.")
                    for alias in node.names
                    if alias.name.startswith("fc_bridge.")
                )
            visit([child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)])

    visit(tree.body)
    return found


def test_no_deployed_module_imports_local_tooling_even_lazily() -> None:
    for path in DEPLOYED:
        local = [m for m in _runtime_imports(path) if m.split(".")[0] in ("local", "testing")]
        assert not local, path.name


def test_the_deployed_import_graph_has_no_cycle() -> None:
    graph = {path.stem: _runtime_imports(path) for path in DEPLOYED}
    visiting: list[str] = []
    finished: set[str] = set()

    def walk(name: str) -> None:
        assert name not in visiting, " -> ".join([*visiting, name])
        if name in finished or name not in graph:
            return
        visiting.append(name)
        for imported in graph[name]:
            walk(imported)
        visiting.pop()
        finished.add(name)

    for name in graph:
        walk(name)
    # The graph was read, not empty: the edges the package is built on are there.
    assert "_bridge" in graph["__init__"] and "_http" in graph["_bridge"]
    assert "_function" in graph["_web"]  # _web, _function, _types: imported on first use
