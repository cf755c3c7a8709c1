"""Tasks an endpoint starts with asyncio.create_task finish before FC gets the response."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from fc_bridge import Bridge, ConfigError
from fc_bridge._loop import SharedLoop
from fc_bridge._types import Receive, Scope, Send

from .conftest import FCContext, fc_call, plain_lifespan

done: list[str] = []
kept: set[asyncio.Task[None]] = set()


@pytest.fixture(autouse=True)
def _clear() -> None:
    done.clear()
    kept.clear()


def spawning_app(work: Any) -> Any:
    """Answers at once, leaving ``work()`` running in a task it does not await."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await plain_lifespan(receive, send)
            return
        kept.add(asyncio.get_running_loop().create_task(work(), name="audit-log"))
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"accepted"})

    return app


def test_fire_and_forget_task_finishes_before_the_handler_returns(loop: SharedLoop) -> None:
    async def work() -> None:
        await asyncio.sleep(0.02)

        async def nested() -> None:
            await asyncio.sleep(0.02)
            done.append("nested")

        kept.add(asyncio.get_running_loop().create_task(nested()))
        done.append("work")

    response = fc_call(Bridge(spawning_app(work), loop=loop))
    assert (response.status, response.body) == (202, b"accepted")
    assert done == ["work", "nested"]


def test_a_task_still_running_at_the_timeout_is_named_and_left(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def work() -> None:
        await asyncio.sleep(0.5)
        done.append("late")

    handler = Bridge(spawning_app(work), task_timeout=0.05, loop=loop)
    with caplog.at_level(logging.WARNING):
        response = fc_call(handler, context=FCContext(request_id="r-7"))
    assert response.status == 202
    assert done == []
    assert [r.getMessage() for r in caplog.records] == [
        "1 task(s) the request started still run after 0.05s and will be frozen with the "
        "instance [request_id=r-7]: audit-log"
    ]


def test_zero_timeout_does_not_wait(loop: SharedLoop, caplog: pytest.LogCaptureFixture) -> None:
    async def work() -> None:
        await asyncio.sleep(0)
        done.append("work")

    handler = Bridge(spawning_app(work), task_timeout=0, loop=loop)
    with caplog.at_level(logging.WARNING):
        fc_call(handler)
    assert done == []
    assert len(caplog.records) == 1
    loop.run(asyncio.sleep(0.01))  # whatever runs the loop next lets the task go on
    assert done == ["work"]


def test_a_failing_task_is_logged_with_the_request_id(
    loop: SharedLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def work() -> None:
        raise ValueError("audit backend down")

    with caplog.at_level(logging.ERROR):
        response = fc_call(
            Bridge(spawning_app(work), loop=loop), context=FCContext(request_id="r-9")
        )
    assert response.status == 202
    [record] = caplog.records
    assert record.getMessage() == "Exception in a task the request started [request_id=r-9]"
    assert record.exc_info is not None and record.exc_info[0] is ValueError


def test_the_lifespan_a_first_request_starts_is_not_its_task(loop: SharedLoop) -> None:
    async def work() -> None:
        done.append("work")

    handler = Bridge(spawning_app(work), task_timeout=5, loop=loop)
    fc_call(handler)  # starts the lifespan, which runs until pre_stop: must not be waited for
    assert done == ["work"]
    handler.pre_stop(None)


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan"), "10", None])
def test_task_timeout_is_validated(value: Any) -> None:
    with pytest.raises(ConfigError, match="task_timeout must be a number of seconds >= 0, got"):
        Bridge(spawning_app(None), task_timeout=value)
