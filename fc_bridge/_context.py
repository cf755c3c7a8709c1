"""Reading FC's context object, whose fields differ between FC generations."""

from __future__ import annotations

from typing import Any


def request_id(context: Any, fallback: object = None) -> str:
    """FC's request id for log lines: the context's, else ``fallback`` (a header), else ``"-"``."""
    value = getattr(context, "request_id", None) or fallback
    return value if isinstance(value, str) and value else "-"
