"""What Function Compute does around a handler, for local runs and tests.

This is FC's side of the contract, reproduced from FC_FACTS (the FC 2.0 runtime's
``fc_rapis_wsgi.py``, the FC 3.0 event format): it turns an HTTP request into what FC would
hand the function and the function's answer into what FC would send back. The deployed bridge
never imports it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._event import as_text
from .._scope import decode_path, prefix_end

WSGIHandler = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes | str]]


@dataclass
class Invocation:
    """An HTTP request as FC's gateway receives it.

    ``target`` is the request target exactly as the client sent it: percent-encoded path, with
    FC's ``/2016-08-15/proxy/<service>/<function>`` prefix on the default address, then ``?``
    and the query. ``headers`` keep the client's order and repeats.
    """

    method: str
    target: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    client_ip: str = "127.0.0.1"


@dataclass
class RuntimeResponse:
    """A response as FC sends it on: status, headers as a dict of lists, the whole body."""

    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a header, matching its name case-insensitively."""
        for key, values in self.headers.items():
            if key.lower() == name.lower() and values:
                return values[0]
        return None


def wsgi_environ(invocation: Invocation, context: Any) -> dict[str, Any]:
    """The environ FC 2.0's Python runtime builds for ``invocation``."""
    uri = invocation.target
    raw_path = urlsplit(uri).path or "/"
    path_info = raw_path[prefix_end(raw_path.encode()) :]
    environ: dict[str, Any] = {
        **os.environ,  # FC really does start from the process environment
        "CONTENT_LENGTH": str(len(invocation.body)),
        "HTTP": "on",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "FCRUNTIME",
        "SERVER_PORT": "9000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "FCRUNTIME/1.0",
        "CONTENT_TYPE": "application/octet-stream",
        "QUERY_STRING": "",
        "wsgi.version": (1, 0),
        "wsgi.input": io.BytesIO(invocation.body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        # Whether FC percent-decodes PATH_INFO is unconfirmed; the bridge reads fc.request_uri.
        "PATH_INFO": decode_path(path_info.encode()) or "/",
        "REQUEST_METHOD": invocation.method,
        "fc.request_uri": uri,
        "REMOTE_ADDR": invocation.client_ip,
    }
    joined: dict[str, list[str]] = {}
    for name, value in invocation.headers:
        joined.setdefault(name.title(), []).append(value)
    content_type = next((k for k in joined if k.lower() == "content-type"), None)
    if content_type is not None:
        environ["CONTENT_TYPE"] = ",".join(joined.pop(content_type))
    for name, values in joined.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = ",".join(values)
    if "?" in uri:
        environ["QUERY_STRING"] = uri.split("?", 1)[1]
    environ["HTTP_X_FC_FUNCTION_HANDLER"] = getattr(
        getattr(context, "function", None), "handler", "index.handler"
    )
    environ["fc.context"] = context
    return environ


def call_wsgi(handler: WSGIHandler, environ: dict[str, Any]) -> RuntimeResponse:
    """Call a WSGI handler the way FC 2.0's runtime does and return what FC would send.

    The runtime keeps the last ``start_response`` status and headers (ignoring ``exc_info``),
    calls ``list(body)`` and joins it (``str`` chunks as UTF-8), never calls ``close()``, and
    turns an exception escaping the handler into a 502 ``UnhandledInvocationError``.
    """
    started: dict[str, Any] = {}
    written = io.BytesIO()

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        grouped: dict[str, list[str]] = {}
        for name, value in headers:
            grouped.setdefault(name, []).append(value)
        started["status"] = int(status.split()[0].strip())
        started["headers"] = grouped
        return written.write

    try:
        result = handler(environ, start_response)
        chunks = [result] if isinstance(result, bytes) else list(result)
        body = written.getvalue() + b"".join(
            chunk.encode() if isinstance(chunk, str) else chunk for chunk in chunks
        )
    except Exception as exc:
        return unhandled_error(exc)
    return RuntimeResponse(started["status"], started["headers"], body)


def unhandled_error(exc: BaseException) -> RuntimeResponse:
    """FC's answer when the function raises: 502 and the error as JSON, shaped as FC's runtime
    shapes it (``get_error_response``: indented by 4, keys sorted, ``stackTrace`` a list of
    ``[file, line, function, code]``)."""
    frames = traceback.extract_tb(exc.__traceback__)
    body = json.dumps(
        {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "stackTrace": [[f.filename, f.lineno, f.name, f.line] for f in frames],
        },
        indent=4,
        sort_keys=True,
    ).encode()
    headers = {
        "Content-Type": ["application/json"],
        "X-Fc-Error-Type": ["UnhandledInvocationError"],
    }
    return RuntimeResponse(502, headers, body)


def http_event(
    invocation: Invocation,
    *,
    domain: str = "fc-bridge.cn-hangzhou.fcapp.run",
    request_id: str | None = None,
    account_id: str = "1234567890",
) -> bytes:
    """The event FC 3.0 passes a built-in runtime's handler for an HTTP trigger request.

    Repeated query parameters and headers arrive joined with a comma; header names are
    canonicalised (``accept-encoding`` becomes ``Accept-Encoding``); a body is base64-encoded
    unless it is text (by its Content-Type, and valid UTF-8), as FC_FACTS section 2 describes.
    """
    parts = urlsplit(invocation.target)
    raw_path = parts.path or "/"
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    headers: dict[str, str] = {}
    for name, value in invocation.headers:
        key = name.title()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    content_type = headers.get("Content-Type", "").encode("latin-1")
    binary = as_text(invocation.body, content_type.lower(), b"") is None
    now = time.time()
    event = {
        "version": "v1",
        "rawPath": raw_path,
        "body": base64.b64encode(invocation.body).decode() if binary else invocation.body.decode(),
        "isBase64Encoded": binary,
        "headers": headers,
        "queryParameters": query,
        "requestContext": {
            "accountId": account_id,
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": invocation.method,
                "path": decode_path(raw_path.encode()),
                "protocol": "HTTP/1.1",
                "sourceIp": invocation.client_ip,
                "userAgent": headers.get("User-Agent", ""),
            },
            "requestId": request_id or f"1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "timeEpoch": str(int(now * 1000)),
        },
    }
    return json.dumps(event).encode()


def call_event(handler: Callable[[Any, Any], Any], event: Any, context: Any) -> RuntimeResponse:
    """Call an FC 3.0 handler with ``event`` and turn its result into what FC would send.

    Each key of the returned ``headers`` becomes a header line; keys that differ only in case
    (how fc-bridge returns several Set-Cookie values) become several lines of one header.
    An exception escaping the handler becomes a 502 ``UnhandledInvocationError``.
    """
    try:
        result = handler(event, context)
    except Exception as exc:
        return unhandled_error(exc)
    headers: dict[str, list[str]] = {}
    for name, value in (result.get("headers") or {}).items():
        key = next((k for k in headers if k.lower() == name.lower()), name)
        headers.setdefault(key, []).append(value)
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    return RuntimeResponse(int(result["statusCode"]), headers, data)
