"""What bridging an ASGI app to FC's WSGI handler costs: fc-bridge against today's options.

Every candidate is a factory taking an ASGI app and returning a WSGI callable, called the way
FC 2.0's runtime calls a handler (``list(body)``, joined) with environs built the way FC builds
them. Candidates run side by side in one process, interleaved in rounds; the tables give
medians and ratios. "floor" is not a bridge: the app awaited directly on an already running
loop in the calling thread, scope and receive/send built from the environ (with fc-bridge's own
scope code, so the floor carries no bridge overhead but the unavoidable part). "floor + task"
awaits it in a fresh task per request, as every ASGI server does: the reference the ratios are
taken against (a bridge must give each request its own task).

Timings on a shared machine swing from run to run; the instruction counts that follow them
(callgrind, ``bench/icount.py``; skipped when valgrind is missing) do not.

    python bench/bench.py            # everything, a few minutes; pinned to one CPU
    python bench/bench.py --quick    # fewer rounds
    python bench/bench.py --no-icount  # timings only
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import io
import os
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cold, icount
from bench.apps import make_fastapi_app, starlette_app
from bench.cold import COLD_BODIES, COLD_START, ENV, ROOT
from fc_bridge import Bridge, Limits
from fc_bridge._loop import SharedLoop
from fc_bridge._options import Options
from fc_bridge._wsgi import parse_environ
from fc_bridge.local.emulator import Invocation, wsgi_environ

WSGI = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
MiB = 1024 * 1024
NO_LIMITS = Limits(request_body=None, async_request_body=None)
TASK = "floor + task"


# --- the candidates ---------------------------------------------------------------------------


def fc_bridge_candidate(app: Any) -> WSGI:
    return Bridge(app, lifespan="off", limits=NO_LIMITS, loop=SharedLoop())


def a2wsgi_candidate(app: Any) -> WSGI:
    from a2wsgi import ASGIMiddleware

    return cast(WSGI, ASGIMiddleware(app))


def mangum_candidate(app: Any) -> WSGI:
    """Mangum behind an environ -> API Gateway v2 event conversion (what an FC port would be)."""
    from mangum import Mangum

    handler = Mangum(app, lifespan="off")

    class Context:
        aws_request_id = "bench"

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        event = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": environ["PATH_INFO"],
            "rawQueryString": environ.get("QUERY_STRING", ""),
            "headers": headers,
            "requestContext": {
                "http": {
                    "method": environ["REQUEST_METHOD"],
                    "path": environ["PATH_INFO"],
                    "sourceIp": environ.get("REMOTE_ADDR", ""),
                    "protocol": "HTTP/1.1",
                }
            },
            "body": base64.b64encode(body).decode() if body else "",
            "isBase64Encoded": bool(body),
        }
        result = handler(event, cast(Any, Context()))
        data = result.get("body") or ""
        payload = base64.b64decode(data) if result.get("isBase64Encoded") else data.encode()
        out_headers = list((result.get("headers") or {}).items())
        out_headers += [("set-cookie", c) for c in result.get("cookies") or []]
        start_response(f"{result['statusCode']} -", out_headers)
        return [payload]

    return wsgi


THREAD_LOOPS: list[asyncio.AbstractEventLoop] = []  # closed after each workload


def loop_per_thread_candidate(app: Any) -> WSGI:
    """BENCHMARKS.md's third option: an event loop per calling thread, run_until_complete
    per request (fast, but objects made in the lifespan cannot be used from other threads)."""
    local = threading.local()

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        loop = getattr(local, "loop", None)
        if loop is None:
            loop = local.loop = asyncio.new_event_loop()
            THREAD_LOOPS.append(loop)
        body = loop.run_until_complete(floor_call(app, environ))
        start_response("200 OK", [])
        return [body]

    return wsgi


CANDIDATES: dict[str, Callable[[Any], WSGI]] = {
    "fc-bridge": fc_bridge_candidate,
    "a2wsgi": a2wsgi_candidate,
    "Mangum": mangum_candidate,
    "loop per thread": loop_per_thread_candidate,
}


# --- measuring ----------------------------------------------------------------------------------


def environ_for(method: str, target: str, body: bytes = b"") -> dict[str, Any]:
    headers = [("Host", "bench.fcapp.run"), ("User-Agent", "bench"), ("Accept", "*/*")]
    if body:
        headers.append(("Content-Type", "application/octet-stream"))
    return wsgi_environ(Invocation(method, target, headers, body), context=None)


def fresh(environ: dict[str, Any]) -> dict[str, Any]:
    copy = dict(environ)
    copy["wsgi.input"] = io.BytesIO(environ["wsgi.input"].getvalue())
    return copy


def fc_runtime_call(wsgi: WSGI, environ: dict[str, Any]) -> bytes:
    """What FC's runtime does: call, list(body), join."""
    return b"".join(list(wsgi(environ, lambda status, headers, exc_info=None: None)))


FLOOR_OPTIONS = Options(limits=NO_LIMITS)


async def floor_call(app: Any, environ: dict[str, Any]) -> bytes:
    parsed = parse_environ(environ, FLOOR_OPTIONS)
    if not isinstance(parsed, tuple):
        raise RuntimeError(parsed)
    scope, body = parsed
    scope["state"] = {}
    chunks: list[bytes] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])

    await app(scope, receive, send)
    return b"".join(chunks)


def time_wsgi(wsgi: WSGI, environ: dict[str, Any], n: int) -> float:
    environs = [fresh(environ) for _ in range(n)]
    gc.collect()
    start = time.perf_counter()
    for env in environs:
        fc_runtime_call(wsgi, env)
    return (time.perf_counter() - start) / n


def time_floor(
    loop: asyncio.AbstractEventLoop, app: Any, environ: dict[str, Any], n: int, task: bool
) -> float:
    environs = [fresh(environ) for _ in range(n)]

    async def run() -> float:
        start = time.perf_counter()
        if task:
            for env in environs:
                await asyncio.ensure_future(floor_call(app, env))
        else:
            for env in environs:
                await floor_call(app, env)
        return (time.perf_counter() - start) / n

    gc.collect()
    return loop.run_until_complete(run())


def per_request(
    app: Any, environ: dict[str, Any], n: int, rounds: int, only: list[str]
) -> dict[str, float]:
    """Median seconds per request for each candidate, interleaved in rounds."""
    loop = asyncio.new_event_loop()
    wsgis = {name: CANDIDATES[name](app) for name in only}
    samples: dict[str, list[float]] = {"floor": [], TASK: [], **{name: [] for name in wsgis}}
    expected = loop.run_until_complete(floor_call(app, fresh(environ)))
    for name, wsgi in wsgis.items():
        got = fc_runtime_call(wsgi, fresh(environ))
        if got != expected:
            raise RuntimeError(f"{name} answered {got[:60]!r}, expected {expected[:60]!r}")
    for _ in range(rounds):
        samples["floor"].append(time_floor(loop, app, environ, n, task=False))
        samples[TASK].append(time_floor(loop, app, environ, n, task=True))
        for name, wsgi in wsgis.items():
            samples[name].append(time_wsgi(wsgi, environ, n))
    loop.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def hammer(
    wsgi: WSGI,
    environ: dict[str, Any],
    deadline: float,
    done: list[int],
    i: int,
    errors: list[str],
) -> None:
    try:
        while time.perf_counter() < deadline:
            fc_runtime_call(wsgi, fresh(environ))
            done[i] += 1
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")


def threaded(app: Any, seconds: float, threads: int, only: list[str]) -> dict[str, float]:
    # Mangum fails in threads without an event loop, leaving an un-awaited coroutine behind.
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
    """Requests per second with ``threads`` threads calling at once (FC instance concurrency)."""
    environ = environ_for("GET", "/slow")
    results: dict[str, float] = {}

    async def floor_workers() -> int:
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await floor_call(app, fresh(environ))
                done += 1

        await asyncio.gather(*(worker() for _ in range(threads)))
        return done

    loop = asyncio.new_event_loop()
    results["floor"] = loop.run_until_complete(floor_workers()) / seconds
    loop.close()
    for name in only:
        done = [0] * threads
        errors: list[str] = []
        deadline = time.perf_counter() + seconds
        pool = [
            threading.Thread(
                target=hammer, args=(CANDIDATES[name](app), environ, deadline, done, i, errors)
            )
            for i in range(threads)
        ]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        while THREAD_LOOPS:
            THREAD_LOOPS.pop().close()
        results[name] = float("nan") if errors and not sum(done) else sum(done) / seconds
        if errors:
            print(f"  {name} with {threads} threads: {len(errors)} thread(s) failed: {errors[0]}")
    return results


def peak_memory(only: list[str]) -> dict[str, float]:
    """Peak memory a 32 MiB POST costs beyond the request body itself, in MiB."""
    body = os.urandom(32 * MiB)
    environ = environ_for("POST", "/upload", body)
    results: dict[str, float] = {}

    def measure(call: Callable[[dict[str, Any]], bytes]) -> float:
        env = fresh(environ)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        answer = call(env)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if answer != str(len(body)).encode():
            raise RuntimeError(f"wrong answer {answer!r}")
        return (peak - base) / MiB

    loop = asyncio.new_event_loop()
    results["floor"] = measure(lambda env: loop.run_until_complete(floor_call(starlette_app, env)))
    loop.close()
    for name in only:
        wsgi = CANDIDATES[name](starlette_app)
        fc_runtime_call(wsgi, fresh(environ_for("GET", "/tiny")))  # warm up outside the trace
        results[name] = measure(partial(fc_runtime_call, wsgi))
    return results


def python(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV
    )
    if out.returncode:
        raise RuntimeError(out.stderr)
    return out.stdout


def cold_start(runs: int, only: list[str]) -> dict[str, float]:
    """Seconds from 'import the bridge' to the first response, in a fresh interpreter."""
    samples: dict[str, list[float]] = {name: [] for name in ["floor", *only] if name in COLD_BODIES}
    for run in range(runs + 1):
        for name in samples:
            seconds = float(python(COLD_START.format(root=ROOT, body=COLD_BODIES[name])))
            if run:  # the first round only writes the bytecode caches
                samples[name].append(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


IMPORT = """
import time{before}
start = time.perf_counter()
import fc_bridge
print(time.perf_counter() - start)
"""


def import_cost(runs: int) -> tuple[float, float]:
    """Milliseconds ``import fc_bridge`` takes alone, and in an app that imported Starlette."""
    alone = [float(python(IMPORT.format(before=""))) for _ in range(runs + 1)][1:]
    in_app = [float(python(IMPORT.format(before=", starlette.applications"))) for _ in range(runs)]
    return statistics.median(alone) * 1e3, statistics.median(in_app) * 1e3


# --- reporting --------------------------------------------------------------------------------


def row(
    label: str,
    values: dict[str, float],
    fmt: Callable[[float], str],
    lower: bool,
    columns: list[str],
) -> str:
    """A table row: each column's value and its ratio to "floor + task", else to the floor
    ("-" where not measured)."""
    reference = TASK if TASK in values else "floor"
    floor = values[reference]
    cells = []
    for name in columns:
        value = values.get(name)
        if value is None:
            cells.append("-")
        elif value != value:  # NaN: the candidate failed
            cells.append("fails")
        else:
            ratio = value / floor if lower else floor / value
            cells.append(fmt(value) + ("" if name == reference else f" ({ratio:.2f}x)"))
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--no-icount", action="store_true", help="skip the instruction counts")
    parser.add_argument("--only", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES))
    args = parser.parse_args()
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        # Thread wake-ups cost 15-25 us on one CPU and 120-200 us across two; pinning keeps
        # a2wsgi's numbers from swinging fourfold between runs (see BENCHMARKS.md).
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rounds = 3 if args.quick else 9
    only = args.only
    us = lambda s: f"{s * 1e6:,.0f} us"  # noqa: E731
    print(f"Python {sys.version.split()[0]}, {rounds} rounds, candidates: {', '.join(only)}\n")
    columns = ["floor", TASK, *only]
    lines = ["| workload | " + " | ".join(columns) + " |", "|" + " --- |" * (len(columns) + 1)]

    tiny_env = environ_for("GET", "/tiny")
    times = per_request(starlette_app, tiny_env, 300 if args.quick else 2000, rounds, only)
    lines.append(row("tiny GET, Starlette PlainTextResponse", times, us, True, columns))
    tiny_times = times

    fast_env = environ_for("GET", "/items/42?q=widget&limit=3")
    times = per_request(make_fastapi_app(), fast_env, 200 if args.quick else 1000, rounds, only)
    lines.append(row("FastAPI JSON route, path + query + pydantic model", times, us, True, columns))

    upload_env = environ_for("POST", "/upload", os.urandom(MiB))
    times = per_request(starlette_app, upload_env, 20 if args.quick else 100, rounds, only)
    rates = {name: 1 / value for name, value in times.items()}
    lines.append(
        row("POST 1 MiB, app reads body", rates, lambda r: f"{r:,.0f} MiB/s", False, columns)
    )

    down_env = environ_for("GET", "/download")
    times = per_request(starlette_app, down_env, 3 if args.quick else 10, rounds, only)
    rates = {name: 8 / value for name, value in times.items()}
    lines.append(
        row(
            "GET 8 MiB StreamingResponse, 64 KiB chunks",
            rates,
            lambda r: f"{r:,.0f} MiB/s",
            False,
            columns,
        )
    )

    rates = threaded(starlette_app, 1.0 if args.quick else 3.0, 8, only)
    lines.append(
        row("8 threads, endpoint sleeps 5 ms", rates, lambda r: f"{r:,.0f} req/s", False, columns)
    )

    memory = peak_memory(only)
    lines.append(
        row(
            "peak extra memory, 32 MiB POST, await request.body()",
            memory,
            lambda m: f"{m:.0f} MiB",
            True,
            columns,
        )
    )

    cold = cold_start(3 if args.quick else 9, only)
    cells = [f"{cold['floor'] * 1e3:.1f} ms", "-"] + [
        f"+{(cold[name] - cold['floor']) * 1e3:.1f} ms" if name in cold else "-" for name in only
    ]
    lines.append(
        "| import + wrap + first request (floor: absolute; others: over floor) | "
        + " | ".join(cells)
        + " |"
    )

    print("\n".join(lines))
    alone, in_app = import_cost(5 if args.quick else 15)
    print(
        f"\nimport fc_bridge: {in_app:.1f} ms in an app that has imported Starlette "
        f"(its own modules), {alone:.1f} ms alone (with asyncio and logging)"
    )
    checks: list[tuple[str, float, float, bool]] = []
    if "fc-bridge" in only and "a2wsgi" in only:
        speedup = tiny_times["a2wsgi"] / tiny_times["fc-bridge"]
        checks.append(("tiny GET >= 5x faster than a2wsgi (time)", speedup, 5.0, True))
    if not args.no_icount:
        if cpus:  # counts do not depend on the CPU: give valgrind's processes every core
            os.sched_setaffinity(0, cpus)
        checks += instructions(args.quick)
    if checks:
        print()
    for label, value, target, at_least in checks:
        ok = value >= target if at_least else value <= target
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {value:.2f}x")


def instructions(quick: bool) -> list[tuple[str, float, float, bool]]:
    """Print the instruction-count table; the checks on it (issue 9's targets)."""
    print()
    if not icount.available():
        print("Instruction counts skipped: valgrind not found (Debian: apt-get install valgrind).")
        return []
    counts = icount.per_request(list(icount.WORKLOADS), icount.CANDIDATES, quick)
    print("\n".join(icount.table(counts, icount.CANDIDATES)))
    checks = []
    for workload in ("tiny GET", "FastAPI JSON route"):
        values = counts[workload]
        for bridge in (icount.FC2, icount.FC3):
            reference = icount.REFERENCE[bridge]
            label = f"{bridge}, {workload} <= 1.10x {reference} (instructions)"
            checks.append((label, values[bridge] / values[reference], 1.10, False))
        label = f"{icount.FC3}, {workload} below Mangum (instructions)"
        checks.append((label, values[icount.FC3] / values["Mangum"], 1.0, False))
    print()
    starts = cold.instructions()
    print("\n".join(cold.table(starts)))
    for name, start in starts.items():
        over = {c: start[c] - start["floor"] for c in ("fc-bridge", "Mangum")}
        label = f"cold start, {name}: fc-bridge no more than Mangum over the floor (instructions)"
        checks.append((label, over["fc-bridge"] / over["Mangum"], 1.0, False))
    return checks


if __name__ == "__main__":
    main()
