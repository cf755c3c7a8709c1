"""The ASGI lifespan, run once per process: started by FC's initializer, stopped by pre_stop.

Mangum runs startup and shutdown around every invocation; on FC an instance serves many
requests, so the lifespan is started once (in the initializer hook, or on the first request
when the function has no initializer configured) and shut down once, in the pre_stop hook.
The lifespan task lives on the shared loop between the two, like under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._types import ASGIApp, LifespanMode, LifespanScope, Message
    from ._types import LifespanPhase as Phase

logger = logging.getLogger("fc_bridge.lifespan")

# The messages an app may send, and in which phases. A failed shutdown is also accepted while
# "running": the app may end its lifespan on its own (Starlette does when its task is torn down).
ACCEPTED: dict[object, tuple[Phase, ...]] = {
    "lifespan.startup.complete": ("starting",),
    "lifespan.startup.failed": ("starting",),
    "lifespan.shutdown.complete": ("stopping",),
    "lifespan.shutdown.failed": ("running", "stopping"),
}


class Lifespan:
    """Drives one app's lifespan protocol; every method runs on the shared loop."""

    def __init__(self, app: ASGIApp, mode: LifespanMode) -> None:
        self._app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.phase: Phase = "idle"
        self.failure: str | None = None
        # True once requests may be served without waiting for startup.
        self.ready = mode == "off"
        # Events bind to a loop on first use, so they can be made here, outside of any loop.
        self._started = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None  # asyncio keeps tasks only weakly
        self._startup_sent = False

    async def startup(self, context: Any = None) -> None:
        """Start the lifespan if nobody has, and wait until startup has succeeded or failed.

        After a shutdown it starts again: FC may send a request or run the initializer after
        pre_stop, when it unfreezes an instance instead of destroying it (FC_FACTS section 8).
        """
        if self.mode == "off":
            return
        if self.phase == "stopped":
            self._reset()
        if self.phase == "idle":
            self.phase = "starting"
            scope: LifespanScope = {
                "type": "lifespan",
                "asgi": {"version": "3.0", "spec_version": "2.0"},
                "state": self.state,
                "fc.context": context,
            }
            # A fresh context: the request that happens to trigger startup must not leak its
            # context variables into a task that outlives it.
            self._task = contextvars.Context().run(
                asyncio.get_running_loop().create_task, self._main(scope)
            )
            # _main reports every error itself; an interrupt it lets through must not be
            # reported again by asyncio ("exception was never retrieved") whenever GC runs.
            self._task.add_done_callback(_retrieve)
        await self._started.wait()

    def _reset(self) -> None:
        self.state = {}
        self.phase = "idle"
        self._started = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._startup_sent = False

    async def within(self, stage: str, timeout: float, context: Any = None) -> None:
        """Run ``stage`` ("startup" or "shutdown") for at most ``timeout`` seconds; past that,
        the lifespan fails with a reason saying where the app was waiting, and is cancelled."""
        wait = self.startup(context) if stage == "startup" else self.shutdown()
        try:
            await asyncio.wait_for(wait, timeout)
        except asyncio.TimeoutError:
            from ._stack import await_stack  # only now: not on every cold start

            task = self._task
            assert task is not None  # startup or shutdown began: the lifespan task exists
            where = await_stack(task)
            self._fail(f"the app did not complete {stage} within {timeout:g}s", where=where)
            task.cancel()
            self._started.set()
            self._stopped.set()

    async def wait_started(self, context: Any, request_id: str) -> bool:
        """A request's view of startup: start it if need be; False (and the reason logged)
        if it failed, for the request to answer 500 rather than run a half-started app."""
        await self.startup(context)
        if self.failure is None:
            return True
        logger.error("Answering 500 [request_id=%s]: ASGI %s", request_id, self.failure)
        return False

    async def shutdown(self) -> None:
        """Ask the app to shut down and wait until it has; a no-op if it never started."""
        if self.phase != "running":
            return
        self.phase = "stopping"
        self._stop_requested.set()
        await self._stopped.wait()

    async def _main(self, scope: LifespanScope) -> None:
        try:
            await self._app(scope, self._receive, self._send)  # type: ignore[arg-type]
        except BaseException as exc:
            self._on_error(exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            if self.phase == "starting" and self.mode == "auto":
                self.phase = "unsupported"
            elif self.phase == "starting":
                self._fail("the app returned before completing startup")
            elif self.phase == "stopping":
                self.phase = "stopped"
        finally:
            # The task is over: nobody may wait for it any longer, whatever phase it reached.
            # Requests after a shutdown start the lifespan again (see startup).
            self.ready = self.phase == "unsupported"
            self._started.set()
            self._stopped.set()

    def _on_error(self, exc: BaseException) -> None:
        if self.phase == "starting" and self.mode == "auto":
            # uvicorn's rule: an app that raises before answering startup has no lifespan.
            logger.info("ASGI 'lifespan' protocol appears unsupported (%r); continuing.", exc)
            self.phase = "unsupported"
        elif self.phase in ("starting", "stopping"):
            self._fail(f"the app raised {exc!r}", exc)
        elif self.phase != "failed":  # after "startup/shutdown.failed" the error is already told
            logger.error("Exception in ASGI lifespan (phase %s)", self.phase, exc_info=exc)

    async def _receive(self) -> Message:
        if not self._startup_sent:
            self._startup_sent = True
            return {"type": "lifespan.startup"}
        await self._stop_requested.wait()
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if self.phase not in ACCEPTED.get(kind, ()):
            raise RuntimeError(
                f"Unexpected ASGI lifespan message {kind!r} in phase {self.phase!r}."
            )
        if kind == "lifespan.startup.complete":
            self.phase = "running"
            self.ready = True
            self._started.set()
            logger.info("Application startup complete.")
        elif kind == "lifespan.shutdown.complete":
            self.phase = "stopped"
            self.ready = False
            self._stopped.set()
            logger.info("Application shutdown complete.")
        else:
            self._fail(str(message.get("message") or kind))
            self._started.set()
            self._stopped.set()

    def _fail(self, reason: str, exc: BaseException | None = None, where: str = "") -> None:
        stage = "startup" if self.phase == "starting" else "shutdown"
        self.phase = "failed"
        self.ready = False
        # Starlette reports a whole traceback: log it once, and keep its last line (the
        # exception itself) as the one-line reason that errors and later log lines repeat.
        lines = [line for line in reason.strip().splitlines() if line.strip()]
        self.failure = f"lifespan {stage} failed: {lines[-1].strip() if lines else reason}"
        if where:
            reason = f"{reason}; it was waiting at:\n{where}"
        logger.error("ASGI lifespan %s failed: %s", stage, reason.strip(), exc_info=exc)


def _retrieve(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        task.exception()
