"""Pieces of an ASGI HTTP scope that every front end builds the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._context import PLAIN_REPRS, for_app

if TYPE_CHECKING:
    from ._types import Headers, HTTPScope

# FC passes the function role's credentials in these request headers (FC 2.0 and 3.0 runtimes,
# web functions): they belong in the context only, never in the headers an app may log.
CREDENTIAL_HEADERS = frozenset(
    {b"x-fc-access-key-id", b"x-fc-access-key-secret", b"x-fc-security-token"}
)
# pathsend: FC buffers the response anyway, so a FileResponse is read in one go (off the loop)
# instead of in 64 KiB chunks, each a round trip through a worker thread.
BUFFERED_EXTENSIONS: dict[str, dict[object, object]] = {"http.response.pathsend": {}}

# The scope's "state" until the request reaches the app, which then gets its own copy of the
# lifespan state (_http.HTTPHandler._cycle): a placeholder no app ever sees or changes.
NO_STATE: dict[str, Any] = {}

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
    extensions: dict[str, dict[object, object]] | None = None,
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
        "state": NO_STATE,
        "extensions": BUFFERED_EXTENSIONS.copy() if extensions is None else extensions,
        # FC's own context class goes as is; others may need hiding (see for_app).
        "fc.context": context if PLAIN_REPRS.get(type(context)) else for_app(context),
        "fc.request_uri": uri,
    }


def server_of(host: str, scheme: str) -> tuple[str, int | None]:
    """The scope's ``server`` for a request to ``host`` (a Host header: name, maybe a port)."""
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and (not name.startswith("[") or name.endswith("]")):
        return name, int(port)
    return host, 443 if scheme == "https" else 80


def scheme(headers: Headers, option: str, reported: str, forwarded: int) -> str:
    """The URL scheme the app sees: the ``scheme`` option, else what the platform ``reported``
    (FC 2.0 always reports http, even for HTTPS clients), or, with ``forwarded`` proxies
    trusted, what the nearest of them says in ``X-Forwarded-Proto``."""
    if option != "auto":
        return option
    if forwarded:
        proto = trusted_value(headers, b"x-forwarded-proto", forwarded).lower()
        if proto in ("http", "https"):
            return proto
    return reported


def client(
    headers: Headers, reported: tuple[str, int] | None, forwarded: int
) -> tuple[str, int] | None:
    """The client address: what FC reports, or, with ``forwarded`` proxies trusted, the
    address the outermost of them saw in ``X-Forwarded-For``."""
    if forwarded:
        address = trusted_value(headers, b"x-forwarded-for", forwarded)
        if address:
            return (address, 0)
    return reported


def trusted_value(headers: Headers, name: bytes, hops: int) -> str:
    """The ``hops``-th value from the right of a comma-separated forwarding header: the one the
    outermost trusted proxy added; values further left are the client's to invent."""
    values: list[str] = []
    for key, value in headers:
        if key == name:
            values += [v.strip() for v in value.decode("latin-1").split(",")]
    return values[-hops] if len(values) >= hops else ""
