"""One event loop for the process, whatever thread FC calls the handler from."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from fc_bridge import Bridge, ReentrantCallError
from fc_bridge._loop import Call, SharedLoop
from fc_bridge._types import Receive, Scope, Send

from .conftest import fc_call, fc_environ


class LoopbackEchoApp:
    """Its lifespan opens a TCP echo server on loopback and a lock; every request uses both."""

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.loops.append(asyncio.get_running_loop())
        if scope["type"] == "lifespan":
            await receive()
            server = await asyncio.start_server(self.echo, "127.0.0.1", 0)
            scope["state"]["port"] = server.sockets[0].getsockname()[1]
            scope["state"]["lock"] = asyncio.Lock()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            server.close()
            await server.wait_closed()
            await send({"type": "lifespan.shutdown.complete"})
            return
        state = scope["state"]
        token = dict(scope["headers"])[b"x-token"]
        reader, writer = await asyncio.open_connection("127.0.0.1", state["port"])
        writer.write(token + b"\n")
        echoed = await reader.readline()
        writer.close()
        await writer.wait_closed()
        async with state["lock"]:  # an asyncio.Lock only works on the loop it was made on
            self.served += 1
            await asyncio.sleep(0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": echoed.strip()})

    async def echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()


def test_32_threads_share_one_loop_and_the_lifespans_resources(loop: SharedLoop) -> None:
    app = LoopbackEchoApp()
    handler = Bridge(app, lifespan="on", loop=loop)
    handler.initializer(None)
    threads, per_thread = 32, 10
    results: dict[int, list[bytes]] = {}
    barrier = threading.Barrier(threads)

    def client(n: int) -> None:
        barrier.wait()
        results[n] = [
            fc_call(handler, "GET", "/", [("X-Token", f"t{n}-{i}")]).body for i in range(per_thread)
        ]

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    handler.pre_stop(None)
    assert results == {n: [f"t{n}-{i}".encode() for i in range(per_thread)] for n in range(threads)}
    assert app.served == threads * per_thread
    assert set(app.loops) == {loop.loop}


def test_a_finished_driver_hands_the_loop_to_a_waiting_thread(loop: SharedLoop) -> None:
    order: list[str] = []
    first_may_finish = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path"][1:]
        if name == "quick":
            # Runs on the loop while "slow" is parked: drive until the slow one has arrived.
            while not first_may_finish.is_set():
                await asyncio.sleep(0.001)
        else:
            first_may_finish.set()
            await asyncio.sleep(0.05)  # still running when "quick" returns
        order.append(name)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": name.encode()})

    handler = Bridge(app, lifespan="off", loop=loop)
    bodies: dict[str, bytes] = {}

    def call(name: str) -> None:
        bodies[name] = fc_call(handler, "GET", f"/{name}").body
        order.append(f"{name} returned")

    quick = threading.Thread(target=call, args=("quick",))
    quick.start()
    deadline = time.monotonic() + 5
    while loop._driver is None:  # the quick request is driving the loop
        assert time.monotonic() < deadline, "the quick request never drove the loop"
        time.sleep(0.001)
    slow = threading.Thread(target=call, args=("slow",))
    slow.start()
    quick.join(timeout=10)
    slow.join(timeout=10)
    assert bodies == {"quick": b"quick", "slow": b"slow"}
    assert order == ["quick", "quick returned", "slow", "slow returned"]


class Patient(Call):
    """A call whose thread gives up after 5 seconds without the loop (a test's bound)."""

    def wait_limit(self) -> float | None:
        return 5.0


class Unarmable(Patient):
    """A call whose bounds cannot be armed: ``suspended`` raises."""

    def suspended(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        raise RuntimeError("cannot arm")


def test_calls_handed_over_together_wake_the_loop_once_and_all_start(loop: SharedLoop) -> None:
    # Two threads hand their calls over while the driver keeps the loop busy: one wake-up of
    # the loop starts both, and a call whose start fails (reported as a callback's exception
    # would be) does not keep the other from starting.
    event_loop = loop.loop
    wakeups: list[object] = []
    reported: list[dict[str, Any]] = []
    hand_over = event_loop.call_soon_threadsafe

    def counted(callback: Any, *args: Any) -> Any:
        wakeups.append(callback)
        return hand_over(callback, *args)

    event_loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]
    event_loop.set_exception_handler(lambda _, context: reported.append(context))

    async def driver() -> str:
        deadline = time.monotonic() + 5
        while len(loop._parked) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)  # blocks the loop until both calls are handed over
        await asyncio.sleep(0)
        return "driver"

    async def value(n: int) -> int:
        await asyncio.sleep(0)
        return n

    results: dict[str, object] = {}

    def run(name: str, coro: Any, call: Call) -> None:
        try:
            results[name] = loop.run(coro, call)
        except Exception as exc:
            results[name] = exc

    driving = threading.Thread(target=run, args=("driver", driver(), Patient()))
    driving.start()
    deadline = time.monotonic() + 5
    while loop._driver is None:
        assert time.monotonic() < deadline, "the driver never ran the loop"
        time.sleep(0.001)
    threads = [
        threading.Thread(target=run, args=("unarmable", value(1), Unarmable())),
        threading.Thread(target=run, args=("plain", value(2), Patient())),
    ]
    for thread in threads:
        thread.start()
        while thread.is_alive() and len(loop._parked) < 1 + threads.index(thread):
            time.sleep(0.001)  # parked in this order
    for thread in [driving, *threads]:
        thread.join(10)
    assert results == {"driver": "driver", "unarmable": 1, "plain": 2}
    assert wakeups == [loop._start_incoming]
    assert [type(context["exception"]) for context in reported] == [RuntimeError]


def test_run_returns_results_and_raises_exceptions_in_the_calling_thread() -> None:
    own = SharedLoop()

    async def value() -> int:
        return 7

    async def failure() -> None:
        raise KeyError("missing")

    try:
        assert own.run(value()) == 7
        with pytest.raises(KeyError, match="missing"):
            own.run(failure())
        assert own.run(value()) == 7
    finally:
        own.close()


def test_no_asyncio_run_and_no_get_event_loop_per_request(
    loop: SharedLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the bridge must not call this per request")

    handler = Bridge(LoopbackEchoApp(), loop=loop)
    handler.initializer(None)
    monkeypatch.setattr(asyncio, "run", forbidden)
    monkeypatch.setattr(asyncio, "get_event_loop", forbidden)
    monkeypatch.setattr(asyncio, "new_event_loop", forbidden)
    assert fc_call(handler, "GET", "/", [("X-Token", "x")]).body == b"x"
    monkeypatch.undo()
    handler.pre_stop(None)


@pytest.mark.asyncio
async def test_handler_called_from_async_code_runs_on_the_shared_loop(loop: SharedLoop) -> None:
    app = LoopbackEchoApp()
    handler = Bridge(app, loop=loop)
    outer = asyncio.get_running_loop()
    response = fc_call(handler, "GET", "/", [("X-Token", "from-async")])
    handler.pre_stop(None)
    assert response.body == b"from-async"
    assert outer not in app.loops
    assert set(app.loops) == {loop.loop}


def test_calling_the_handler_from_inside_the_app_is_refused(loop: SharedLoop) -> None:
    handler: Bridge
    inner: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/outer":
            statuses: list[str] = []
            body = handler(fc_environ("GET", "/inner"), lambda status, *a: statuses.append(status))
            inner.extend([*statuses, b"".join(body).decode()])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body"})

    # A short timeout: should the guard fail, the test fails fast instead of hanging.
    handler = Bridge(app, lifespan="off", timeout=2, loop=loop)
    outer = fc_call(handler, "GET", "/outer")
    # The inner call answers 500 (ReentrantCallError, logged); the outer one carries on.
    assert outer.status == 200
    assert inner == ["500 Internal Server Error", "Internal Server Error"]


def test_reentrant_call_error_names_the_problem(loop: SharedLoop) -> None:
    async def inner() -> None:
        return None

    async def outer() -> None:
        loop.run(inner())

    with pytest.raises(ReentrantCallError, match="called from inside the application it serves"):
        loop.run(outer())


def test_an_interrupt_escaping_the_loop_reaches_the_caller_and_the_loop_lives_on(
    loop: SharedLoop,
) -> None:
    background: list[asyncio.Task[None]] = []

    finished: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/interrupt":

            async def boom() -> None:
                raise KeyboardInterrupt

            background.append(asyncio.get_running_loop().create_task(boom()))
            await asyncio.sleep(0.01)
        finished.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    handler = Bridge(app, lifespan="off", loop=loop)
    with pytest.raises(KeyboardInterrupt):
        fc_call(handler, "GET", "/interrupt")
    assert fc_call(handler, "GET", "/after").body == b"/after"
    time.sleep(0.02)
    assert fc_call(handler, "GET", "/again").body == b"/again"
    assert isinstance(background[0].exception(), KeyboardInterrupt)
    # The interrupted request's own work finishes whenever the loop runs again, quietly.
    loop.run(asyncio.sleep(0.02))
    assert sorted(finished) == ["/after", "/again", "/interrupt"]


def test_close_cancels_what_is_left_and_a_new_loop_follows() -> None:
    own = SharedLoop()
    cancelled: list[bool] = []

    async def leave_a_task() -> asyncio.AbstractEventLoop:
        async def forever() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)  # let it start and reach its await
        return asyncio.get_running_loop()

    first = own.run(leave_a_task())
    own.close()
    assert cancelled == [True]
    assert first.is_closed()
    second = own.run(leave_a_task())
    assert second is not first
    own.close()
    own.close()  # closing twice is harmless


@pytest.mark.asyncio
async def test_exceptions_cross_back_from_the_helper_thread() -> None:
    own = SharedLoop()

    async def failure() -> None:
        raise KeyError("from the shared loop")

    try:
        with pytest.raises(KeyError, match="from the shared loop"):
            own.run(failure())
    finally:
        own.close()


def test_background_timers_keep_running_while_fast_requests_keep_coming(loop: SharedLoop) -> None:
    ticks: list[float] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":

            async def ticker() -> None:
                while True:
                    await asyncio.sleep(0.002)
                    ticks.append(time.monotonic())

            await receive()
            task = asyncio.get_running_loop().create_task(ticker())
            await send({"type": "lifespan.startup.complete"})
            await receive()
            task.cancel()
            await send({"type": "lifespan.shutdown.complete"})
            return
        # Answers within its first step: the fastest path the bridge has.
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    handler = Bridge(app, loop=loop)
    handler.initializer(None)
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        assert fc_call(handler).status == 204
    handler.pre_stop(None)
    # The loop polls timers at least every 10 ms while busy: about 20 ticks in 0.2 s.
    assert len(ticks) >= 5


def test_async_generators_started_in_a_request_are_finalized_by_the_loop(
    loop: SharedLoop,
) -> None:
    cleaned: list[str] = []

    async def numbers() -> Any:
        try:
            for i in range(10):
                yield i
        finally:
            await asyncio.sleep(0)  # only an aclose() run by the loop gets past this
            cleaned.append("closed")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        first = -1
        if scope["path"] == "/generator":
            generator = numbers()
            first = await generator.__anext__()  # then dropped, unfinished
            del generator
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(first).encode()})

    handler = Bridge(app, lifespan="off", loop=loop)
    fc_call(handler, "GET", "/warm-up")  # polls the loop, so the next request takes its first
    assert fc_call(handler, "GET", "/generator").body == b"0"  # step without run_forever
    loop.run(asyncio.sleep(0.01))
    assert cleaned == ["closed"]


def test_the_shared_loop_is_asyncios_whatever_policy_the_app_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class ForeignLoop(asyncio.SelectorEventLoop):
        pass

    class ForeignPolicy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return ForeignLoop()

    monkeypatch.setattr(asyncio.events, "get_event_loop_policy", lambda: ForeignPolicy())
    own = SharedLoop()
    try:
        assert type(own.loop) is asyncio.SelectorEventLoop
    finally:
        own.close()
