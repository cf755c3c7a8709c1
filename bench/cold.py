"""Cold start: a fresh interpreter, with bytecode as deployed, from importing the bridge to the
first response; over the floor, which serves the same app its first request without a bridge.

``COLD_START`` is the program (the app and an FC 2.0 environ), ``COLD_BODIES`` what each
candidate runs in it. ``make bench`` times them (``bench.cold_start``); :func:`instructions`
counts them with callgrind, which is repeatable to the instruction where timings swing by
milliseconds between runs: for the tiny Starlette app, and for the FastAPI JSON route (lifespan
off for every candidate, as Mangum is run).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
# Deployed code has .pyc files (pip compiles on install): let the subprocesses write and use them.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def floor(path: str, query: str, headers: str, starts: str = "") -> str:
    """The floor's body: the app awaited on a new loop with a scope built by hand; with
    ``starts``, what the response body must start with."""
    check = f"    assert out[1]['body'].startswith(b{starts!r})\n" if starts else ""
    return (
        "import asyncio\n"
        "async def main():\n"
        "    out = []\n"
        "    async def receive():\n"
        "        return {'type': 'http.request', 'body': b'', 'more_body': False}\n"
        "    async def send(m): out.append(m)\n"
        f"    scope = {{'type': 'http', 'method': 'GET', 'path': {path!r},\n"
        f"        'raw_path': {path.encode()!r}, 'root_path': '',\n"
        f"        'query_string': {query.encode()!r},\n"
        f"        'headers': {headers}, 'scheme': 'http',\n"
        "        'http_version': '1.1', 'asgi': {'version': '3.0'}}\n"
        "    await app(scope, receive, send)\n"
        f"{check}"
        "asyncio.new_event_loop().run_until_complete(main())"
    )


COLD_START = """
import io, sys, time
sys.path.insert(0, {root!r})
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
async def tiny(request):
    return PlainTextResponse("hello")
app = Starlette(routes=[Route("/tiny", tiny)])
environ = {{"REQUEST_METHOD": "GET", "PATH_INFO": "/tiny", "SCRIPT_NAME": "", "QUERY_STRING": "",
    "fc.request_uri": "/tiny", "SERVER_NAME": "FCRUNTIME", "SERVER_PORT": "9000",
    "HTTP_HOST": "bench.fcapp.run",
    "CONTENT_LENGTH": "0", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http"}}
start = time.perf_counter()
{body}
print(time.perf_counter() - start)
"""

COLD_BODIES = {
    "floor": floor("/tiny", "", "[]"),
    "fc-bridge": (
        "from fc_bridge import bridge\n"
        "assert b''.join(bridge(app, lifespan='off')(environ, lambda *a: None)) == b'hello'"
    ),
    "a2wsgi": (
        "from a2wsgi import ASGIMiddleware\n"
        "assert b''.join(ASGIMiddleware(app)(environ, lambda *a: None)) == b'hello'"
    ),
    "Mangum": (
        "from mangum import Mangum\n"
        "event = {'version': '2.0', 'rawPath': '/tiny', 'rawQueryString': '', 'headers': {},\n"
        "    'requestContext': {'http': {'method': 'GET', 'path': '/tiny',\n"
        "                                'sourceIp': '1.1.1.1'}}}\n"
        "class Ctx: pass\n"
        "assert Mangum(app, lifespan='off')(event, Ctx())['body'] == 'hello'"
    ),
}


FASTAPI_START = """
import io, sys
sys.path.insert(0, {root!r})
from bench.apps import make_fastapi_app
app = make_fastapi_app()
environ = {{"REQUEST_METHOD": "GET", "PATH_INFO": "/items/42", "SCRIPT_NAME": "",
    "QUERY_STRING": "q=widget", "fc.request_uri": "/items/42?q=widget",
    "HTTP_HOST": "bench.fcapp.run", "SERVER_NAME": "FCRUNTIME", "SERVER_PORT": "9000",
    "CONTENT_LENGTH": "0", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http"}}
{body}
"""

FASTAPI_BODIES = {
    "floor": floor("/items/42", "q=widget", "[(b'host', b'bench.fcapp.run')]", "{"),
    "fc-bridge": (
        "from fc_bridge import bridge\n"
        "body = b''.join(bridge(app, lifespan='off')(environ, lambda *a: None))\n"
        "assert body.startswith(b'{')"
    ),
    "Mangum": (
        "from mangum import Mangum\n"
        "event = {'version': '2.0', 'rawPath': '/items/42', 'rawQueryString': 'q=widget',\n"
        "    'headers': {'host': 'bench.fcapp.run'},\n"
        "    'requestContext': {'http': {'method': 'GET', 'path': '/items/42',\n"
        "                                'sourceIp': '1.1.1.1'}}}\n"
        "class Ctx: pass\n"
        "assert Mangum(app, lifespan='off')(event, Ctx())['body'].startswith('{')"
    ),
}

PROGRAMS = {
    "tiny Starlette app": (COLD_START, COLD_BODIES),
    "FastAPI JSON route": (FASTAPI_START, FASTAPI_BODIES),
}
CANDIDATES = ["floor", "fc-bridge", "Mangum"]


def count(program: str, python: str = sys.executable) -> int:
    """Instructions callgrind counts for ``python -c program``, its bytecode written first."""
    subprocess.run([python, "-c", program], check=True, capture_output=True, cwd=ROOT, env=ENV)
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python]
    env = {**ENV, "PYTHONHASHSEED": "0"}
    done = subprocess.run([*command, "-c", program], capture_output=True, text=True, env=env)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or found is None:
        raise RuntimeError(f"a cold start failed under valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def instructions(python: str = sys.executable) -> dict[str, dict[str, int]]:
    """Instructions from import to first response, by program and candidate (floor absolute)."""
    jobs = [
        (name, candidate, start.format(root=ROOT, body=bodies[candidate]))
        for name, (start, bodies) in PROGRAMS.items()
        for candidate in CANDIDATES
    ]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        totals = list(pool.map(lambda job: count(job[2], python), jobs))
    result: dict[str, dict[str, int]] = {}
    for (name, candidate, _), total in zip(jobs, totals, strict=True):
        result.setdefault(name, {})[candidate] = total
    return result


def table(counts: dict[str, dict[str, int]]) -> list[str]:
    """Instructions over the floor (the floor itself absolute), and fc-bridge against Mangum."""
    lines = [
        "| import + wrap + first request | floor | fc-bridge | Mangum |",
        "| --- | --- | --- | --- |",
    ]
    for name, values in counts.items():
        floor = values["floor"]
        bridge, mangum = values["fc-bridge"] - floor, values["Mangum"] - floor
        cells = [f"{floor / 1e6:,.1f}M", f"+{bridge / 1e6:.2f}M ({bridge / mangum:.2f}x Mangum)"]
        lines.append(f"| {name} | " + " | ".join([*cells, f"+{mangum / 1e6:.2f}M"]) + " |")
    return lines
