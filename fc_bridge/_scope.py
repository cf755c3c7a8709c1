"""Pieces of an ASGI HTTP scope that every front end builds the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._types import Headers, HTTPScope

HTTP_VERSIONS = {"HTTP/1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/2": "2", "HTTP/2.0": "2"}


def http_scope(
    *,
    method: str,
    scheme: str,
    protocol: object,
    paths: tuple[str, str, bytes],
    query: bytes,
    headers: Headers,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    context: Any,
    uri: str,
) -> HTTPScope:
    """The scope of one request (``paths`` is ``resolve()``'s ``root_path, path, raw_path``).

    ``state`` is added when the request reaches the app, from the lifespan.
    """
    root_path, path, raw_path = paths
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": HTTP_VERSIONS.get(protocol, "1.1") if isinstance(protocol, str) else "1.1",
        "method": method.upper(),
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
        # pathsend: FC buffers the response anyway, so a FileResponse is read in one go
        # instead of in 64 KiB chunks, each a round trip through a worker thread.
        "extensions": {"http.response.pathsend": {}},
        "fc.context": context,
        "fc.request_uri": uri,
    }


def scheme(headers: Headers, option: str, reported: str) -> str:
    """The URL scheme the app sees: the ``scheme`` option, else the forwarded protocol, else
    what the platform ``reported`` (FC 2.0 always reports http, even for HTTPS clients)."""
    if option != "auto":
        return option
    for name, value in headers:
        if name == b"x-forwarded-proto":
            proto = value.partition(b",")[0].strip().lower()
            if proto in (b"http", b"https"):
                return proto.decode()
    return reported


def header_text(data: bytes) -> str:
    """Header bytes as the str FC will send as UTF-8: UTF-8 when they are, else Latin-1."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.decode("latin-1")
