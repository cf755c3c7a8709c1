"""Many threads, one shared loop: FC's instance concurrency with requests that wait for I/O.

With an instance concurrency above 1, FC's Python runtime calls the handler from a thread per
request. Here 64 and then 128 threads call the WSGI handler at once; each request waits 20 ms
of I/O, in two workloads: ``asyncio.sleep(0.02)``; and ``asyncio.sleep(0.01)`` then a GET
through the ``httpx.AsyncClient`` the app made in its lifespan, to a loopback server (a process
of its own) that answers after 10 ms.

Candidates:
- fc-bridge: ``bridge(app)``, every thread's request on the one shared loop, so all of them
  share the lifespan's client and its connection pool (a ``SharedLoop`` of its own per round,
  as the shared-loop design below gets, so that rounds are independent).
- loop per thread: an event loop per calling thread, ``run_until_complete`` per request; the
  client cannot be shared across loops, so each thread runs the lifespan on its own loop and
  gets a client of its own (its best case: made once per thread, not per request). It calls
  the app directly, without FC's part of the work (the environ, the scope, FC's limits).
- fc-bridge, loop per thread: the same design with the bridge's work: a bridge per thread, on
  a loop of its own, with its own lifespan (and client). The shared loop's reference with
  the FC work counted on both sides.
- Two designs for sharing one loop, each calling the app directly (no bridge work, so they
  compare the designs alone): "shared loop, app only", fc-bridge's ``SharedLoop`` (the calling
  thread runs the loop itself unless another thread does, then hands its coroutine over); and
  "loop thread, app only", a loop running in a thread of its own that every call is handed to
  with ``run_coroutine_threadsafe`` (a2wsgi's design, the one the issue suggested trying).

Each thread makes a fixed number of requests (bounded in count, and by a deadline); rounds
alternate the candidates. Printed: requests per second, p50 and p99 latency, CPU time per
request (all threads), errors, and the ratio of fc-bridge to loop per thread. A third
reference, "one loop, no threads", runs as many asyncio tasks on one loop in one thread: what
any design sharing one loop (and so the lifespan's client) can reach.

    python bench/concurrency.py           # 64 and 128 threads, 3 rounds
    python bench/concurrency.py --quick   # fewer requests, 1 round
    python bench/concurrency.py --client httpx2 --workload io  # another client library

``--client`` names a module with httpx's API for the second workload. httpcore's connection
pool (httpx's default transport, 1.0.9) scans its connections for every queued request each
time a request starts or ends, so a client shared by 64 concurrent requests spends most of
its CPU there; ``httpx2`` (``pip install httpx2``), a fork whose pool does not, tells how much
of the gap to a loop per thread (64 small pools) is the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import io
import itertools
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import types
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, MutableMapping
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fc_bridge import Bridge, SharedLoop, bridge

SLEEP = 0.01  # the app's own wait
UPSTREAM_DELAY = 0.01  # the loopback server's: 20 ms of I/O per request in all
client_library: types.ModuleType = httpx  # --client: a module with httpx's API
DEADLINE = 120.0  # seconds a round may take at most

# A loopback HTTP/1.1 server that answers every GET "ok" after UPSTREAM_DELAY, keep-alive.
UPSTREAM = f"""
import asyncio
DELAY = {UPSTREAM_DELAY!r}
RESPONSE = b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\ncontent-type: text/plain\\r\\n\\r\\nok"
class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        loop = asyncio.get_running_loop()
        while (end := self.buffer.find(b"\\r\\n\\r\\n")) >= 0:
            self.buffer = self.buffer[end + 4:]
            loop.call_later(DELAY, self.answer)
    def answer(self):
        if not self.transport.is_closing():
            self.transport.write(RESPONSE)
async def main():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def make_app(upstream: str, connections: int) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        library = client_library
        limits = library.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with library.AsyncClient(base_url=upstream, limits=limits) as client:
            yield {"client": client}

    async def io_bound(request: Request) -> Response:
        await asyncio.sleep(SLEEP)
        answer = await request.state.client.get("/")
        return PlainTextResponse(answer.text)

    async def sleeps(request: Request) -> Response:
        await asyncio.sleep(SLEEP + UPSTREAM_DELAY)
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/io", io_bound), Route("/sleep", sleeps)], lifespan=lifespan)


# What FC passes in every environ (``fc.context``, FC_FACTS section 3): each request its own id.
FUNCTION = types.SimpleNamespace(name="bench", handler="index.handler", memory=512, timeout=60)
REQUEST_IDS = itertools.count()  # next() is atomic: threads share it safely


def environ(path: str) -> dict[str, Any]:
    context = types.SimpleNamespace(
        request_id=f"r-{next(REQUEST_IDS)}",
        credentials=None,
        region="cn-hangzhou",
        account_id="1",
        function=FUNCTION,
        service=types.SimpleNamespace(name="bench"),
    )
    return {
        "fc.context": context,
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "fc.request_uri": path,
        "SERVER_NAME": "FCRUNTIME",
        "SERVER_PORT": "9000",
        "CONTENT_LENGTH": "0",
        "HTTP_HOST": "bench.local",
        "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "http",
    }


async def asgi_call(app: Starlette, path: str, state: Mapping[str, Any] | None) -> bytes:
    """One request straight to the app: "ok", or the status if it is not 200."""
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench.local")],
        "state": dict(state or {}),
    }
    await app(scope, receive, send)
    if sent[0]["status"] != 200:
        return str(sent[0]["status"]).encode()
    return b"".join(m.get("body", b"") for m in sent[1:])


Call = Callable[[], bytes]
Candidate = tuple[Call, Callable[[], None], Callable[[], None]]  # call, per-thread setup, close


def open_bridge(app: Starlette) -> tuple[Bridge, SharedLoop]:
    """A bridge on a loop of its own, its lifespan started as FC's initializer hook starts it
    (the lifespan makes the client)."""
    loop = SharedLoop()
    handler = bridge(app, lifespan="on", loop=loop)
    handler.initializer(None)
    return handler, loop


def close_bridge(handler: Bridge, loop: SharedLoop) -> None:
    handler.pre_stop(None)
    loop.close()


def wsgi_call(handler: Bridge, path: str) -> bytes:
    """One request through the FC 2.0 handler: "ok", or the status if it is not 200."""
    status: list[str] = []
    body = b"".join(handler(environ(path), lambda s, h, e=None: status.append(s)))
    return body if status == ["200 OK"] else status[0].encode()


def fc_bridge_candidate(app: Starlette, path: str) -> Candidate:
    # A loop of its own per round, as the shared-loop design below gets, so that rounds are
    # independent (the process's one loop would carry each round's state into the next).
    handler, loop = open_bridge(app)
    return lambda: wsgi_call(handler, path), lambda: None, lambda: close_bridge(handler, loop)


def fc_bridge_per_thread_candidate(app: Starlette, path: str) -> Candidate:
    """fc-bridge's same work on a loop per thread: each thread a bridge of its own, on a loop
    of its own, with its own lifespan (and so client). What the bridge would cost without
    sharing a loop: the reference for its design, the FC work counted on both sides."""
    local = threading.local()
    opened: list[tuple[Bridge, SharedLoop]] = []
    lock = threading.Lock()

    def setup() -> None:  # in each thread, before the clock starts
        local.handler, loop = open_bridge(app)
        with lock:
            opened.append((local.handler, loop))

    def close() -> None:
        for handler, loop in opened:
            close_bridge(handler, loop)

    return lambda: wsgi_call(local.handler, path), setup, close


def loop_per_thread_candidate(app: Starlette, path: str) -> Candidate:
    local = threading.local()
    opened: list[tuple[asyncio.AbstractEventLoop, Any]] = []
    lock = threading.Lock()

    def setup() -> None:  # in each thread, before the clock starts
        loop = asyncio.new_event_loop()
        lifespan = app.router.lifespan_context(app)
        local.loop = loop
        local.state = loop.run_until_complete(lifespan.__aenter__())
        with lock:
            opened.append((loop, lifespan))

    def call() -> bytes:
        return local.loop.run_until_complete(asgi_call(app, path, local.state))  # type: ignore[no-any-return]

    def close() -> None:
        for loop, lifespan in opened:
            loop.run_until_complete(lifespan.__aexit__(None, None, None))
            loop.close()

    return call, setup, close


def shared_loop_candidate(app: Starlette, path: str) -> Candidate:
    shared = SharedLoop()
    lifespan = app.router.lifespan_context(app)
    state = shared.run(lifespan.__aenter__())

    def call() -> bytes:
        return shared.run(asgi_call(app, path, state))

    def close() -> None:
        shared.run(lifespan.__aexit__(None, None, None))
        shared.close()

    return call, lambda: None, close


def loop_thread_candidate(app: Starlette, path: str) -> Candidate:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="loop thread", daemon=True)
    thread.start()
    lifespan = app.router.lifespan_context(app)
    state = asyncio.run_coroutine_threadsafe(lifespan.__aenter__(), loop).result()

    def call() -> bytes:
        return asyncio.run_coroutine_threadsafe(asgi_call(app, path, state), loop).result()

    def close() -> None:
        asyncio.run_coroutine_threadsafe(lifespan.__aexit__(None, None, None), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    return call, lambda: None, close


PER_THREAD = "fc-bridge, loop per thread"
CANDIDATES = {
    "fc-bridge": fc_bridge_candidate,
    PER_THREAD: fc_bridge_per_thread_candidate,
    "loop per thread": loop_per_thread_candidate,
    "shared loop, app only": shared_loop_candidate,
    "loop thread, app only": loop_thread_candidate,
}
ONE_LOOP = "one loop, no threads"
# Workload: (path, requests per thread). Through the shared client a request costs 5-9 ms of
# CPU (httpcore's pool), so that workload makes fewer to stay within minutes.
WORKLOADS = {
    "sleep 20 ms": ("/sleep", 30),
    "sleep 10 ms + lifespan httpx client, upstream 10 ms": ("/io", 8),
}


@contextlib.contextmanager
def upstream_server() -> Iterator[str]:
    process = subprocess.Popen([sys.executable, "-c", UPSTREAM], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def run_round(
    name: str, upstream: str, path: str, threads: int, per_thread: int
) -> dict[str, float]:
    """One candidate, ``threads`` threads making ``per_thread`` requests each."""
    app = make_app(upstream, threads)
    if name == ONE_LOOP:
        return asyncio.run(one_loop(app, path, threads, per_thread))
    call, setup, close = CANDIDATES[name](app, path)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    ready = threading.Barrier(threads + 1)
    deadline = time.monotonic() + DEADLINE

    def worker(i: int) -> None:
        try:
            setup()
            if call() != b"ok":  # warm-up, not counted: connections open
                raise RuntimeError("warm-up request failed")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        ready.wait()
        mine = latencies[i]
        for _ in range(per_thread):
            if time.monotonic() > deadline:
                errors.append("deadline passed")
                return
            started = time.perf_counter()
            try:
                body = call()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            mine.append(time.perf_counter() - started)
            if body != b"ok":
                errors.append(f"unexpected body {body[:60]!r}")

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    ready.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for thread in pool:
        thread.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    close()
    return summary(name, threads, latencies, errors, elapsed, cpu)


async def one_loop(app: Starlette, path: str, tasks: int, per_task: int) -> dict[str, float]:
    """The reference for any shared-loop design: as many asyncio tasks on one loop, in one
    thread, sharing the lifespan's client; no thread hands anything over."""
    latencies: list[list[float]] = [[] for _ in range(tasks)]
    errors: list[str] = []
    async with app.router.lifespan_context(app) as state:

        async def worker(i: int) -> None:
            for _ in range(per_task):
                started = time.perf_counter()
                body = await asgi_call(app, path, state)
                latencies[i].append(time.perf_counter() - started)
                if body != b"ok":
                    errors.append(f"unexpected body {body[:60]!r}")

        await asyncio.gather(*(asgi_call(app, path, state) for _ in range(tasks)))  # warm-up
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(tasks))), DEADLINE)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return summary(ONE_LOOP, tasks, latencies, errors, elapsed, cpu)


def summary(
    name: str,
    threads: int,
    latencies: list[list[float]],
    errors: list[str],
    elapsed: float,
    cpu: float,
) -> dict[str, float]:
    every = sorted(latency for mine in latencies for latency in mine)
    if errors:
        print(f"  {name}, {threads} threads: {len(errors)} error(s), first: {errors[0]}")
    return {
        "rps": len(every) / elapsed,
        "p50": every[len(every) // 2] if every else float("nan"),
        "p99": every[min(len(every) - 1, int(len(every) * 0.99))] if every else float("nan"),
        "errors": float(len(errors)),
        "cpu": cpu / max(len(every), 1),  # CPU seconds per request, all threads together
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, one round")
    parser.add_argument("--threads", type=int, nargs="*", default=[64, 128])
    parser.add_argument(
        "--client", default="httpx", help="module with httpx's API for the io workload"
    )
    parser.add_argument(
        "--workload",
        choices=["all", *(path.lstrip("/") for path, _ in WORKLOADS.values())],
        default="all",
        help="only the workload at this path",
    )
    args = parser.parse_args()
    global client_library
    client_library = importlib.import_module(args.client)
    workloads = {
        name: plan
        for name, plan in WORKLOADS.items()
        if args.workload in ("all", plan[0].lstrip("/"))
    }
    rounds = 1 if args.quick else 3
    version = getattr(client_library, "__version__", "?")
    print(f"Python {sys.version.split()[0]}, {args.client} {version}, {rounds} round(s)\n")
    lines = [
        "| workload | threads | candidate | req/s | p50 | p99 | CPU / request | errors "
        "| req/s vs loop per thread |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    checks: list[str] = []
    names = [*CANDIDATES, ONE_LOOP]
    with upstream_server() as upstream:
        for workload, (path, per_thread) in workloads.items():
            if args.quick:
                per_thread = max(per_thread // 3, 2)
            for threads in args.threads:
                results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
                for _ in range(rounds):
                    for name in names:
                        results[name].append(run_round(name, upstream, path, threads, per_thread))
                medians = {
                    name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                    for name, runs in results.items()
                }
                reference = medians["loop per thread"]["rps"]
                for name, m in medians.items():
                    lines.append(
                        f"| {workload} | {threads} | {name} | {m['rps']:,.0f} | "
                        f"{m['p50'] * 1e3:.1f} ms | {m['p99'] * 1e3:.1f} ms | "
                        f"{m['cpu'] * 1e6:,.0f} us | {m['errors']:.0f} | "
                        f"{m['rps'] / reference:.2f}x |"
                    )
                ratio = medians["fc-bridge"]["rps"] / reference
                errors = sum(r["errors"] for runs in results.values() for r in runs)
                ok = ratio >= 0.95 and errors == 0
                designs = (
                    medians["shared loop, app only"]["rps"]
                    / medians["loop thread, app only"]["rps"]
                )
                checks.append(
                    f"info  {workload}, {threads} threads: the shared loop's design "
                    f"{designs:.2f}x a loop thread's (both calling the app directly)"
                )
                same_work = medians["fc-bridge"]["rps"] / medians[PER_THREAD]["rps"]
                checks.append(
                    f"info  {workload}, {threads} threads: fc-bridge {same_work:.2f}x its own "
                    f"work on a loop per thread (a bridge per thread)"
                )
                checks.append(
                    f"{'PASS' if ok else 'FAIL'}  {workload}, {threads} threads: fc-bridge "
                    f"{ratio:.2f}x loop per thread (>= 0.95x), {errors:.0f} error(s); "
                    f"{medians['fc-bridge']['rps'] / medians[ONE_LOOP]['rps']:.2f}x one loop"
                )
    print("\n".join(lines))
    print()
    print("\n".join(checks))


if __name__ == "__main__":
    main()
