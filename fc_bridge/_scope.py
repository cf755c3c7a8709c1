"""The ASGI HTTP scope every front end builds the same way: its pieces, and the path.

The path: on FC's default address a function is reached at
``https://<account>.<region>.fc.aliyuncs.com/2016-08-15/proxy/<service>/<function>/<path>``. The
app's routes are written for ``/<path>``, but every URL it builds (FastAPI's ``/docs`` loading
``openapi.json``, ``url_for``, redirects) must carry the prefix. ASGI says exactly how: ``path``
is the full path, ``root_path`` the part the app is mounted under, and routers match what
follows it. On a custom domain there is no prefix and ``root_path`` is empty (:func:`resolve`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote_to_bytes

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
    /,
) -> HTTPScope:
    """The scope of one request (``paths`` is ``resolve()``'s ``root_path, path, raw_path``).

    ``state`` is added when the request reaches the app, from the lifespan. Positional only:
    ten keyword arguments cost a thousand instructions a request on Python 3.11.
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
        "extensions": BUFFERED_EXTENSIONS.copy(),
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


# The path and root_path.

# FC's default address: /2016-08-15/proxy/<service>[.<qualifier>]/<function>/<path>
PROXY_PATH = b"/2016-08-15/proxy/"


def prefix_end(raw_path: bytes) -> int:
    """Where FC's default-address prefix ``/2016-08-15/proxy/<service>[.<qualifier>]/<function>``
    ends in ``raw_path`` (a path without query or fragment); 0 if it has none."""
    if not raw_path.startswith(PROXY_PATH):
        return 0
    start = len(PROXY_PATH)
    service_end = raw_path.find(b"/", start)
    if service_end <= start:  # no "/" after the service, or an empty service
        return 0
    end = raw_path.find(b"/", service_end + 1)
    if end == -1:
        end = len(raw_path)
    return end if end > service_end + 1 else 0  # 0: an empty function name


def split_uri(uri: bytes) -> tuple[bytes, bytes]:
    """Split a request URI (origin or absolute form) into its raw path and its query."""
    if uri[:1] != b"/":
        # Absolute form, "https://host/path?q": drop the scheme and authority.
        authority = uri.find(b"://")  # find, not `in`: see decode_path
        start = uri.find(b"/", authority + 3) if authority != -1 else -1
        uri = uri[start:] if start != -1 else b"/"
    path, _, query = uri.partition(b"?")
    return path.partition(b"#")[0] or b"/", query.partition(b"#")[0]


def resolve(raw_path: bytes, root_path: str | None) -> tuple[str, str, bytes]:
    """Return the scope's ``(root_path, path, raw_path)`` for a request's raw path.

    ``root_path=None`` detects FC's default-address prefix. An explicit root path replaces the
    detected prefix; a path that does not start with it yet gets it prepended, so the app sees
    the same full path whether or not a proxy in front stripped the root path.
    """
    end = prefix_end(raw_path)
    if not end and root_path is None:  # a custom domain: the common case
        return "", decode_path(raw_path), raw_path
    if end:
        prefix, rest = raw_path[:end], raw_path[end:]
        if rest[:1] != b"/":  # FC calls the function's bare prefix with PATH_INFO "/"
            rest = b"/" + rest
    else:
        prefix, rest = b"", raw_path
    if root_path is None:
        full = prefix + rest
        return decode_path(prefix), decode_path(full), full
    root = quote(root_path, safe="/:@!$&'()*+,;=~").encode("ascii")
    if rest == root or rest.startswith(root + b"/"):
        full = rest
    else:
        full = root + rest
    return root_path, decode_path(full), full


_PERCENT = ord("%")


def decode_path(raw: bytes) -> str:
    """Percent-decode a raw path into the ``str`` ASGI puts in ``path`` (UTF-8, like uvicorn)."""
    # Not `b"%" in raw`: bytes' `in` first tries its operand as an int (a byte value), and the
    # TypeError it raises and clears costs more than the rest of the request's path handling.
    if _PERCENT in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", "replace")


def encode_path(path: str) -> bytes:
    """Percent-encode a decoded path back into raw bytes (when a server gives no raw path)."""
    return quote(path, safe="/:@!$&'()*+,;=~").encode("ascii")
