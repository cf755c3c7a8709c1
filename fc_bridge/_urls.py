"""Request paths: FC's URL prefix becomes the ASGI ``root_path``.

On FC's default address a function is reached at
``https://<account>.<region>.fc.aliyuncs.com/2016-08-15/proxy/<service>/<function>/<path>``. The
app's routes are written for ``/<path>``, but every URL it builds (FastAPI's ``/docs`` loading
``openapi.json``, ``url_for``, redirects) must carry the prefix. ASGI says exactly how: ``path``
is the full path, ``root_path`` the part the app is mounted under, and routers match what
follows it. On a custom domain there is no prefix and ``root_path`` is empty.
"""

from __future__ import annotations

from urllib.parse import quote, unquote_to_bytes

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
        start = uri.find(b"/", uri.find(b"://") + 3) if b"://" in uri else -1
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


def decode_path(raw: bytes) -> str:
    """Percent-decode a raw path into the ``str`` ASGI puts in ``path`` (UTF-8, like uvicorn)."""
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", "replace")


def encode_path(path: str) -> bytes:
    """Percent-encode a decoded path back into raw bytes (when a server gives no raw path)."""
    return quote(path, safe="/:@!$&'()*+,;=~").encode("ascii")
