"""Where code is waiting, for the log records of requests that ran out of time."""

from __future__ import annotations

import asyncio
import linecache
from types import FrameType
from typing import Any


def await_stack(task: asyncio.Task[Any]) -> str:
    """Where a task waits: its coroutine and each one it awaits, innermost last."""
    lines = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        try:
            frame = (
                getattr(awaited, "cr_frame", None)
                or getattr(awaited, "gi_frame", None)
                or getattr(awaited, "ag_frame", None)
            )
            if frame is not None:
                lines.append(_frame_line(frame))
            awaited = (
                getattr(awaited, "cr_await", None)
                or getattr(awaited, "gi_yieldfrom", None)
                or getattr(awaited, "ag_await", None)
            )
        except Exception:  # the app's own awaitable, whose attributes raise: the stack ends
            lines.append(f"  (in a {type(awaited).__name__} that cannot be looked into)")
            break
    return "\n".join(lines) or "  (no frame)"


def frame_stack(frame: FrameType | None) -> str:
    """A thread's stack, outermost first, as a traceback shows it."""
    lines = []
    while frame is not None:
        lines.append(_frame_line(frame))
        frame = frame.f_back
    return "\n".join(reversed(lines))


def _frame_line(frame: FrameType) -> str:
    code = frame.f_code
    source = linecache.getline(code.co_filename, frame.f_lineno).strip()
    line = f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}'
    return f"{line}\n    {source}" if source else line
