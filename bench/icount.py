"""Instructions per request, counted by callgrind: repeatable whatever else the machine does.

    python bench/icount.py                            # the table (needs Debian's valgrind)
    python bench/icount.py --run WORKLOAD CANDIDATE N  # one process, what valgrind runs

Each workload and candidate runs in two processes under ``valgrind --tool=callgrind``, with 0
and with N requests after the same warm-up; the difference over N is one request's cost.

The floors import nothing from fc_bridge. They do the part of a bridge's work no design can
skip: a minimal scope from FC's input, FC's request limit checks, the app awaited with a
receive and a send that collect the response. "floor" awaits the app in one long-lived task;
"floor + task" in a fresh task per request, as every ASGI server does (contextvars isolation,
``asyncio.current_task()``): the reference for FC 2.0. "floor + task + event" adds what FC 3.0
needs on top: ``json.loads`` of the event and FC's response dict (base64 for a binary body):
the reference for FC 3.0. Mangum is handed an API Gateway v2 event as a dict, so it does no
JSON parsing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent

# name: (method, path, query, requests counted)
WORKLOADS: dict[str, tuple[str, str, str, int]] = {
    "tiny GET": ("GET", "/tiny", "", 500),
    "FastAPI JSON route": ("GET", "/items/42", "q=widget&limit=3", 200),
    "GET 1 MiB binary": ("GET", "/binary", "", 10),
}
FC2 = "fc-bridge FC 2.0"
FC3 = "fc-bridge FC 3.0"
CANDIDATES = ["floor", "floor + task", FC2, "floor + task + event", FC3, "Mangum"]
REFERENCE = {FC2: "floor + task", FC3: "floor + task + event", "Mangum": "floor + task + event"}
WARM_UP = 100
HOST = "bench.cn-hangzhou.fcapp.run"

CONTEXT = types.SimpleNamespace(
    request_id="r",
    credentials=None,
    region="cn-hangzhou",
    account_id="1",
    function=types.SimpleNamespace(name="f", handler="main.handler", memory=512, timeout=60),
    service=types.SimpleNamespace(name="s"),
)


# --- FC's input, as FC gives it -----------------------------------------------------------------


def environ(method: str, path: str, query: str) -> dict[str, Any]:
    """An FC 2.0 environ, with the keys FC's Python runtime sets."""
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "FCRUNTIME",
        "SERVER_PORT": "9000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "REMOTE_ADDR": "1.2.3.4",
        "CONTENT_TYPE": "application/octet-stream",
        "CONTENT_LENGTH": "0",
        "fc.request_uri": path + ("?" + query if query else ""),
        "fc.context": CONTEXT,
        "HTTP_HOST": HOST,
        "HTTP_USER_AGENT": "curl/8",
        "HTTP_ACCEPT": "*/*",
    }


def event(method: str, path: str, query: str) -> bytes:
    """An FC 3.0 HTTP trigger's event, as the JSON bytes FC passes."""
    http = {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4"}
    return json.dumps(
        {
            "version": "v1",
            "rawPath": path,
            "body": "",
            "isBase64Encoded": False,
            "headers": {"Host": HOST, "User-Agent": "curl/8", "Accept": "*/*"},
            "queryParameters": dict(pair.split("=") for pair in query.split("&") if pair),
            "requestContext": {
                "accountId": "1",
                "domainName": HOST,
                "domainPrefix": "bench",
                "http": {**http, "userAgent": "curl/8"},
                "requestId": "r",
                "time": "t",
                "timeEpoch": "1",
            },
        }
    ).encode()


def api_gateway_event(method: str, path: str, query: str) -> dict[str, Any]:
    """The same request as API Gateway v2 hands it to a Lambda function (for Mangum)."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": HOST, "user-agent": "curl/8", "accept": "*/*"},
        "isBase64Encoded": False,
        "requestContext": {
            "accountId": "1",
            "apiId": "a",
            "domainName": HOST,
            "domainPrefix": "bench",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4"},
            "requestId": "r",
            "routeKey": "$default",
            "stage": "$default",
            "time": "t",
            "timeEpoch": 1,
        },
    }


# --- the floors: what no bridge can skip ---------------------------------------------------------


def check_limits(headers: list[tuple[bytes, bytes]], target: str, body_length: int) -> None:
    size = sum(len(name) + len(value) for name, value in headers)
    if size > 8192 or len(target) > 4096 or body_length > 32 << 20:
        raise ValueError("over FC's limits")


def scope_from_environ(env: dict[str, Any]) -> dict[str, Any]:
    headers = [
        (key[5:].replace("_", "-").lower().encode("latin-1"), value.encode("latin-1"))
        for key, value in env.items()
        if key.startswith("HTTP_")
    ]
    check_limits(headers, env["fc.request_uri"], int(env.get("CONTENT_LENGTH") or 0))
    path = env["PATH_INFO"]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": env["REQUEST_METHOD"],
        "scheme": env["wsgi.url_scheme"],
        "path": path,
        "raw_path": path.encode("latin-1"),
        "query_string": env["QUERY_STRING"].encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": (env["REMOTE_ADDR"], 0),
        "server": (HOST, 80),
        "state": {},
    }


def scope_from_event(ev: dict[str, Any]) -> dict[str, Any]:
    http = ev["requestContext"]["http"]
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in ev["headers"].items()]
    check_limits(headers, ev["rawPath"], len(ev["body"]))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": http["method"],
        "scheme": "https",
        "path": http["path"],
        "raw_path": ev["rawPath"].encode(),
        "query_string": urlencode(ev["queryParameters"]).encode(),
        "root_path": "",
        "headers": headers,
        "client": (http["sourceIp"], 0),
        "server": (HOST, 443),
        "state": {},
    }


async def run_app(app: Any, scope: dict[str, Any], body: bytes) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def event_response(sent: list[dict[str, Any]]) -> dict[str, Any]:
    start = sent[0]
    body = b"".join(message.get("body", b"") for message in sent[1:])
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    text = headers.get("content-type", "").startswith(("text/", "application/json"))
    return {
        "statusCode": start["status"],
        "headers": headers,
        "body": body.decode() if text else base64.b64encode(body).decode(),
        "isBase64Encoded": not text,
    }


# --- one process: what valgrind runs ------------------------------------------------------------


def requests(workload: str, candidate: str) -> Callable[[int], int]:
    """A function making ``k`` requests of ``workload`` through ``candidate``; it returns the
    last response's status."""
    sys.path.insert(0, str(ROOT))
    from bench import apps

    method, path, query, _ = WORKLOADS[workload]
    app = apps.make_fastapi_app() if path.startswith("/items") else apps.starlette_app
    loop = asyncio.new_event_loop()
    if candidate in ("floor", "floor + task", "floor + task + event"):
        fresh_task = candidate != "floor"
        payload = event(method, path, query)  # FC passes the JSON: not the floor's to build

        async def one() -> int:
            if candidate == "floor + task + event":
                ev = json.loads(payload)
                sent = run_app(app, scope_from_event(ev), base64.b64decode(ev["body"]))
                return int(event_response(await asyncio.ensure_future(sent))["statusCode"])
            env = environ(method, path, query)
            call = run_app(app, scope_from_environ(env), env["wsgi.input"].read())
            messages = await (asyncio.ensure_future(call) if fresh_task else call)
            return int(messages[0]["status"])

        async def many(k: int) -> int:
            status = 0
            for _ in range(k):
                status = await one()
            return status

        return lambda k: loop.run_until_complete(many(k))
    if candidate in (FC2, FC3):
        from fc_bridge import bridge

        handler = bridge(app, lifespan="off")
        if candidate == FC2:
            statuses: list[str] = []

            def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
                statuses.append(status)

            def fc2(k: int) -> int:
                for _ in range(k):
                    b"".join(handler(environ(method, path, query), start_response))
                return int(statuses[-1][:3])

            return fc2
        payload = event(method, path, query)

        def fc3(k: int) -> int:
            status = 0
            for _ in range(k):
                status = handler(payload, CONTEXT)["statusCode"]
            return status

        return fc3
    if candidate == "Mangum":
        from mangum import Mangum

        mangum = Mangum(app, lifespan="off")
        api_event = api_gateway_event(method, path, query)

        class LambdaContext:
            aws_request_id = "r"

        def aws(k: int) -> int:
            status = 0
            for _ in range(k):
                status = mangum(api_event, LambdaContext())["statusCode"]  # type: ignore[arg-type]
            return status

        return aws
    raise SystemExit(f"unknown candidate {candidate!r}")


# --- the driver ---------------------------------------------------------------------------------


def count(workload: str, candidate: str, n: int, python: str) -> int:
    """Instructions for the whole process making ``n`` requests after the warm-up."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        python,
        str(Path(__file__).resolve()),
        "--run",
        workload,
        candidate,
        str(n),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or found is None:
        failed = f"{candidate} on {workload} failed under valgrind"
        raise RuntimeError(f"{failed}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_request(
    workloads: list[str], candidates: list[str], quick: bool = False, python: str = sys.executable
) -> dict[str, dict[str, float]]:
    """Instructions per request, by workload and candidate; both cores busy, one process each."""
    runs = [
        (workload, candidate, WORKLOADS[workload][3] // (2 if quick else 1))
        for workload in workloads
        for candidate in candidates
    ]
    jobs = [(workload, candidate, k) for workload, candidate, n in runs for k in (0, n)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        totals = list(pool.map(lambda job: count(job[0], job[1], job[2], python), jobs))
    result: dict[str, dict[str, float]] = {}
    for i, (workload, candidate, n) in enumerate(runs):
        base, total = totals[2 * i], totals[2 * i + 1]
        result.setdefault(workload, {})[candidate] = (total - base) / n
    return result


def available() -> bool:
    return shutil.which("valgrind") is not None


def table(counts: dict[str, dict[str, float]], candidates: list[str]) -> list[str]:
    """A markdown table: thousands of instructions, each bridge's ratio to its reference."""
    lines = [
        "| instructions per request | " + " | ".join(candidates) + " |",
        "|" + " --- |" * (len(candidates) + 1),
    ]
    for workload, values in counts.items():
        cells = []
        for candidate in candidates:
            value = values[candidate]
            reference = REFERENCE.get(candidate)
            ratio = f" ({value / values[reference]:.2f}x)" if reference in values else ""
            cells.append(f"{value / 1000:,.1f}k{ratio}")
        lines.append(f"| {workload} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs=3, metavar=("WORKLOAD", "CANDIDATE", "N"))
    parser.add_argument("--quick", action="store_true", help="half the requests")
    args = parser.parse_args()
    if args.run:
        workload, candidate, n = args.run
        make = requests(workload, candidate)
        if make(WARM_UP) != 200:
            raise SystemExit(f"{candidate} on {workload}: not a 200")
        make(int(n))
        return
    if not available():
        raise SystemExit("valgrind not found: install Debian's valgrind to count instructions.")
    print(f"Python {sys.version.split()[0]}, instructions per request (callgrind)\n")
    counts = per_request(list(WORKLOADS), CANDIDATES, args.quick)
    print("\n".join(table(counts, CANDIDATES)))


if __name__ == "__main__":
    main()
