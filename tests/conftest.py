from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fc_bridge import Bridge
from fc_bridge._loop import SharedLoop, shared_loop
from fc_bridge._types import Receive, Send
from fc_bridge.local.cli import fresh_contexts
from fc_bridge.local.emulator import Invocation, RuntimeResponse, call_wsgi, wsgi_environ

# FC's own samples (README, "What the bridge relies on FC for"); FC_BRIDGE_SAMPLES overrides.
SAMPLES = Path(
    os.environ.get("FC_BRIDGE_SAMPLES")
    or Path(__file__).resolve().parent.parent.parent / "shared" / "fc-samples"
)
PREFIX = "/2016-08-15/proxy/svc/fn"
SECRET = "S3cr3t-access-key-secret-canary"


@dataclass
class Credentials:
    access_key_id: str = "LTAI-test-key-id"
    access_key_secret: str = SECRET
    security_token: str = "token-canary-for-tests"


@dataclass
class Function:
    name: str = "fn"
    handler: str = "main.handler"
    memory: int = 512
    timeout: int = 60


@dataclass
class FCContext:
    """Shaped like FC 2.0's FCContext (FC_FACTS section 3), with canary credentials."""

    request_id: str = "req-1"
    credentials: Credentials = field(default_factory=Credentials)
    function: Function = field(default_factory=Function)
    region: str = "cn-hangzhou"
    account_id: str = "123456789"


def fc_environ(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    context: Any = None,
    client_ip: str = "203.0.113.7",
) -> dict[str, Any]:
    """An environ built the way FC 2.0's runtime builds it."""
    invocation = Invocation(method, target, headers or [], body, client_ip)
    return wsgi_environ(invocation, context if context is not None else FCContext())


def fc_call(handler: Bridge, *args: Any, **kwargs: Any) -> RuntimeResponse:
    """One request through ``handler`` as FC 2.0 would make it and collect it."""
    return call_wsgi(handler, fc_environ(*args, **kwargs))


async def read_all(receive: Receive) -> bytes:
    """The whole request body, however many messages it comes in."""
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body"):
            return body


async def plain_lifespan(receive: Receive, send: Send) -> None:
    """A lifespan that starts and stops and does nothing else."""
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    await send({"type": "lifespan.shutdown.complete"})


@pytest.fixture
def loop() -> Iterator[SharedLoop]:
    """A loop of the test's own, so that tasks a test leaves behind are cancelled with it."""
    own = SharedLoop()
    yield own
    own.close()


@pytest.fixture(autouse=True, scope="session")
def _close_shared_loop() -> Iterator[None]:
    yield
    shared_loop.close()


@contextmanager
def running_server(app: Any, **options: Any) -> Iterator[str]:
    """A real uvicorn server for ``app`` on a free loopback port; yields its base URL.

    A fresh context per request, as ``fc-bridge serve`` configures uvicorn, unless
    ``reset_contextvars=False``.
    """
    import uvicorn

    options = {"lifespan": "on", **fresh_contexts(), **options}
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **options)
    server = uvicorn.Server(config)
    exit_codes: list[object] = []

    def run() -> None:
        try:
            server.run()
        except SystemExit as exc:  # uvicorn exits when the app's startup fails
            exit_codes.append(exc.code)

    thread = threading.Thread(target=run, name="uvicorn")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            raise RuntimeError(f"uvicorn did not start (exit code {exit_codes or None})")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_http(url: str, timeout: float = 20) -> None:
    """Poll ``url`` until a server answers (any status), or fail after ``timeout`` seconds."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
