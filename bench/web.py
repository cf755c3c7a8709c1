"""The deployed web function against plain uvicorn: requests per second and p99 latency.

Both servers run the same app with uvicorn's same loop and HTTP implementation, each in a process
of its own on loopback: ``fc-bridge serve --mode web --behind-fc`` (what an FC custom runtime
runs) and ``uvicorn``. The load is a bounded client in this process: ``CONNECTIONS`` keep-alive
connections, each making a fixed number of requests one after the other. Rounds alternate
between the servers; the table gives medians and ratios to plain uvicorn.

    python bench/web.py                 # tiny GET and the FastAPI route, 5 rounds
    python bench/web.py --quick         # fewer requests and rounds
    python bench/web.py --instructions  # each server's instructions per request (callgrind)

Timings swing with whatever else the machine runs. ``--instructions`` counts what each server
process executes per request instead (Debian's ``valgrind``): the server under callgrind,
sent requests one after the other on one keep-alive connection, once with ``WARMUP`` requests
and once with ``WARMUP + N``; the difference over N is one request's cost, the server's own
HTTP handling included (the kernel's part of each read and write is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONNECTIONS = 16
WORKLOADS = {
    "tiny GET": ("bench.apps:starlette_app", "/tiny"),
    "FastAPI JSON route": ("bench.fastapi_target:app", "/items/42?q=widget&limit=3"),
}
# What FC's gateway adds to every request it forwards to a web function (FC_FACTS section 5);
# both servers get the same bytes.
FC_HEADERS = "".join(
    f"{name}: {value}\r\n"
    for name, value in {
        "x-fc-function-name": "bench",
        "x-fc-function-handler": "index.handler",
        "x-fc-function-memory": "512",
        "x-fc-function-timeout": "60",
        "x-fc-region": "cn-hangzhou",
        "x-fc-account-id": "1234567890",
        "x-fc-service-name": "bench-service",
        "x-fc-qualifier": "LATEST",
        "x-fc-access-key-id": "STS.bench",
        "x-fc-access-key-secret": "bench-secret",
        "x-fc-security-token": "bench-token",
    }.items()
)
LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(server: str, target: str, port: int) -> list[str]:
    common = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if server == "fc-bridge web":
        return [str(BIN / "fc-bridge"), "serve", target, "--mode", "web", "--behind-fc", *common]
    return [str(BIN / "uvicorn"), target, "--no-server-header", "--no-access-log", *common]


@contextlib.contextmanager
def serving(server: str, target: str) -> Iterator[int]:
    """Start ``server`` on a free loopback port; its port once it accepts connections."""
    port = free_port()
    process = subprocess.Popen(command(server, target, port), cwd=ROOT, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{server} did not start on port {port}") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


async def connection(port: int, path: str, count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for n in range(count):
            request = (
                f"GET {path} HTTP/1.1\r\nHost: bench.fcapp.run\r\n"
                f"x-fc-request-id: 1-{id(writer):x}-{n}\r\n{FC_HEADERS}\r\n"
            ).encode()
            start = time.perf_counter()
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"not a 200: {head[:80]!r}")
            found = LENGTH.search(head)
            await reader.readexactly(int(found.group(1)) if found else 0)
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


def load(port: int, path: str, requests: int) -> tuple[float, float]:
    """Requests per second and p99 latency (seconds) of ``requests`` requests."""
    latencies: list[float] = []

    async def run() -> float:
        per_connection = requests // CONNECTIONS
        start = time.perf_counter()
        await asyncio.gather(
            *(connection(port, path, per_connection, latencies) for _ in range(CONNECTIONS))
        )
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    return len(latencies) / elapsed, statistics.quantiles(latencies, n=100)[98]


WARMUP = 100
COLLECTED = re.compile(r"Collected : (\d+)")


def request_bytes(path: str, n: int) -> bytes:
    """The n-th request on a connection: what FC's gateway sends a web function."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: bench.fcapp.run\r\n"
        f"x-fc-request-id: 1-{os.getpid():x}-{n}\r\n{FC_HEADERS}\r\n"
    ).encode()


def counted(server: str, target: str, path: str, requests: int) -> int:
    """Instructions the server process executes serving ``requests`` requests, from its start
    to its exit (Ctrl-C), under callgrind."""
    port = free_port()
    args = command(server, target, port)
    module = ["-m", "uvicorn"] if server == "uvicorn" else ["-m", "fc_bridge.local"]
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        process = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                f"--log-file={log.name}",
                sys.executable,
                *module,
                *args[1:],
            ],
            cwd=ROOT,
            env=os.environ.copy(),
        )
        try:
            deadline = time.monotonic() + 120  # slow to start under valgrind
            while True:
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{server} did not start on port {port}") from None
                    time.sleep(0.2)
            with sock, sock.makefile("rb") as stream:
                for n in range(requests):
                    sock.sendall(request_bytes(path, n))
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = stream.readline()
                        if not line:
                            raise RuntimeError(f"{server} closed the connection")
                        head += line
                    if not head.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(f"not a 200: {head[:80]!r}")
                    found = LENGTH.search(head)
                    stream.read(int(found.group(1)) if found else 0)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
        total = COLLECTED.search(log.read())
    if total is None:
        raise RuntimeError(f"callgrind counted nothing for {server}")
    return int(total.group(1))


def instructions(requests: int) -> None:
    """The table of each server's instructions per request."""
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind): no instructions.")
        return
    servers = ["uvicorn", "fc-bridge web"]
    runs = [
        (workload, server, count)
        for workload in WORKLOADS
        for server in servers
        for count in (WARMUP, WARMUP + requests)
    ]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = pool.map(lambda run: counted(run[1], *WORKLOADS[run[0]], run[2]), runs)
        totals = dict(zip(runs, counts, strict=True))
    print(
        f"Python {sys.version.split()[0]}, instructions per request inside each server "
        f"(callgrind, {requests} requests on one keep-alive connection)\n"
    )
    print("| workload | " + " | ".join(servers) + " |")
    print("|" + " --- |" * (len(servers) + 1))
    for workload in WORKLOADS:
        cost = {
            server: (totals[workload, server, WARMUP + requests] - totals[workload, server, WARMUP])
            / requests
            for server in servers
        }
        base = cost["uvicorn"]
        cells = [f"{cost[s] / 1e3:,.1f}k ({base / cost[s]:.2f}x)" for s in servers]
        print(f"| {workload} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions instead (valgrind)"
    )
    args = parser.parse_args()
    if args.instructions:
        instructions(300 if args.quick else 1000)
        return
    rounds, requests = (3, 1600) if args.quick else (5, 8000)
    servers = ["uvicorn", "fc-bridge web"]
    print(
        f"Python {sys.version.split()[0]}, {CONNECTIONS} keep-alive connections, "
        f"{requests} requests a round, {rounds} rounds\n"
    )
    print("| workload | " + " | ".join(f"{s} req/s | {s} p99" for s in servers) + " |")
    print("|" + " --- |" * (2 * len(servers) + 1))
    for workload, (target, path) in WORKLOADS.items():
        samples: dict[str, list[tuple[float, float]]] = {server: [] for server in servers}
        for _ in range(rounds):
            for server in servers:
                with serving(server, target) as port:
                    load(port, path, requests // 4)  # warm-up: imports, lifespan, caches
                    samples[server].append(load(port, path, requests))
        base_rps = statistics.median(rps for rps, _ in samples["uvicorn"])
        base_p99 = statistics.median(p99 for _, p99 in samples["uvicorn"])
        cells = []
        for server in servers:
            rps = statistics.median(r for r, _ in samples[server])
            p99 = statistics.median(p for _, p in samples[server])
            cells.append(f"{rps:,.0f} ({rps / base_rps:.2f}x)")
            cells.append(f"{p99 * 1e3:.1f} ms ({p99 / base_p99:.2f}x)")
        print(f"| {workload} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
