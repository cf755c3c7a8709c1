"""FC 2.0's HTTP handler: a WSGI environ in, a WSGI response out.

FC's Python runtime builds the environ from a JSON description of the request, so its strings
are real Unicode (decoded from UTF-8), not PEP 3333's Latin-1 stand-ins for bytes; an environ
is taken to come from FC when it carries ``fc.request_uri``. Any other WSGI server is read the
PEP 3333 way, so the handler also runs under wsgiref, gunicorn or a test client.
"""

from __future__ import annotations

import logging
import os
from http import HTTPStatus
from typing import TYPE_CHECKING

from ._context import field
from ._limits import FC_HEADER_PREFIX, Rejection, bad_request
from ._scope import (
    CREDENTIAL_HEADERS,
    PROXY_PATH,
    decode_path,
    encode_path,
    http_scope,
    resolve,
    server_of,
    split_uri,
)
from ._scope import client as choose_client
from ._scope import scheme as choose_scheme

if TYPE_CHECKING:
    from ._http import Response
    from ._options import Options
    from ._types import Headers, HTTPScope, StartResponse, WSGIEnviron, WSGIInput

logger = logging.getLogger("fc_bridge")

# Status lines by code, filled as codes are first answered (cheaper at import than all of them).
STATUS_LINES: dict[int, str] = {}

_NOT_HEADERS = frozenset(
    {
        "HTTP_CONTENT_TYPE",
        "HTTP_CONTENT_LENGTH",
        # The function role's credentials: in the context only (see _scope.CREDENTIAL_HEADERS).
        *("HTTP_" + name.decode().upper().replace("-", "_") for name in CREDENTIAL_HEADERS),
    }
)
FC_DEFAULT_TYPE = "application/octet-stream"  # what FC's runtime sets when a request has none
_DEFAULT_HEADER_SIZE = len(b"content-type") + len(FC_DEFAULT_TYPE)

# The request headers of each environ shape (its keys, in order) seen lately: the keys that
# stand for headers, with their names. FC's environ carries the whole process environment
# besides the request, so the same few shapes come every time, and telling one apart from the
# others (a tuple of the keys, a dict lookup, in C) costs a fraction of classifying every key.
Plan = tuple[tuple[str, bytes, bool], ...]  # (environ key, header name, counted by FC's limit)
_plans: dict[tuple[str, ...], Plan] = {}
MAX_PLANS = 64
_os_http_variables: dict[str, str] | None = None
_warned_no_host = False


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


def _environment_http_variables() -> dict[str, str]:
    """``HTTP_*`` variables of the process environment, which FC copies into every environ.

    FC builds the environ as ``{**os.environ, **request}``: an environment variable such as
    ``HTTP_PROXY`` would otherwise reach the app as a request header nobody sent. Read once:
    ``_os_http_variables`` keeps them.
    """
    global _os_http_variables
    environ = os.environ
    _os_http_variables = {k: environ[k] for k in environ if k.startswith("HTTP_")}
    return _os_http_variables


def parse_environ(environ: WSGIEnviron, options: Options) -> tuple[HTTPScope, bytes] | Rejection:
    """Build the ASGI scope and read the body of the request ``environ`` describes."""
    root_path = options.root_path
    limits = options.limits
    method = environ.get("REQUEST_METHOD")
    if not method:
        return bad_request("The WSGI environ has no REQUEST_METHOD.")
    uri: str | None = environ.get("fc.request_uri")
    if uri is not None:
        raw_path, query = split_uri(uri.encode("utf-8", "surrogatepass"))
    else:
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw_uri:
            raw_path, query = split_uri(_latin1(raw_uri))
        else:
            pep3333_path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            raw_path = encode_path(decode_path(_latin1(pep3333_path))) or b"/"
            query = _latin1(environ.get("QUERY_STRING", ""))
        if root_path is None:
            root_path = environ.get("SCRIPT_NAME") or None
    root, path, raw_path = resolve(raw_path, root_path)

    length_text: str = environ.get("CONTENT_LENGTH") or ""
    length = 0
    if length_text:
        if not (length_text.isascii() and length_text.isdigit()):
            return bad_request(f"Content-Length {length_text!r} is not a non-negative integer.")
        length = int(length_text)
    if uri is None:
        headers, size = _headers(environ, "latin-1", "strict", length)
    else:
        headers, size = _headers(environ, "utf-8", "surrogatepass", length)
    host: str | None = environ.get("HTTP_HOST")
    if host is None:
        host = options.host
        if host is None and uri is not None:
            host = _fc_host(environ.get("fc.context"), raw_path)
        if host is not None:
            encoded = host.encode("idna")
            headers.append((b"host", encoded))
            size += len(b"host") + len(encoded)

    target = len(raw_path) + (len(query) + 1 if query else 0)
    invocation = environ.get("HTTP_X_FC_INVOCATION_TYPE")
    is_async = invocation is not None and invocation.lower() == "async"
    # FC's gateway checked the headers the client sent, before its runtime added a default
    # Content-Type: so the default does not count (undercounting here cannot reject a
    # request FC accepted; counting it could). _headers() passes it on only with a body.
    if uri is not None and length and environ.get("CONTENT_TYPE") == FC_DEFAULT_TYPE:
        size -= _DEFAULT_HEADER_SIZE
    rejection = limits.check_request(target, size, length, is_async=is_async)
    if rejection is not None:
        return rejection
    stream: WSGIInput | None = environ.get("wsgi.input")
    if stream is None:
        body = b""
    elif length_text:
        body = _read_exactly(stream, length) if length else b""
    elif environ.get("wsgi.input_terminated"):  # chunked upload: the server tells us its end
        body = stream.read()
        rejection = limits.check_request(target, size, len(body), is_async=is_async)
        if rejection is not None:
            return rejection
    else:
        body = b""
    if len(body) < length:
        return bad_request(
            f"The request body is {len(body)} bytes, shorter than its Content-Length of {length}."
        )

    remote = environ.get("REMOTE_ADDR")
    forwarded = options.forwarded
    reported = (remote, int(environ.get("REMOTE_PORT") or 0)) if remote else None
    scheme = choose_scheme(
        headers, options.scheme, environ.get("wsgi.url_scheme") or "http", forwarded
    )
    if uri is not None:  # FC's SERVER_NAME is its runtime's ("FCRUNTIME"): the host instead
        server = server_of(host, scheme) if host else None
    else:
        server_name = environ.get("SERVER_NAME")
        server_port = environ.get("SERVER_PORT")
        server = (server_name, int(server_port) if server_port else None) if server_name else None
    scope = http_scope(
        method,
        scheme,
        environ.get("SERVER_PROTOCOL"),  # protocol
        (root, path, raw_path),  # paths
        query,
        headers,
        choose_client(headers, reported, forwarded) if forwarded else reported,  # client
        server,
        environ.get("fc.context"),  # context
        uri if uri is not None else "",  # uri: FC's request URI
    )
    return scope, body


def _fc_host(context: object, raw_path: bytes) -> str | None:
    """The host of a request FC 2.0 passed without one (its runtime drops the gateway's).

    On FC's default address (the path carries FC's prefix) that is the function's default
    domain, ``<account_id>.<region>.fc.aliyuncs.com``, from the context. A custom domain
    cannot be known: the ``host`` option names it, and without one the app sees no host and
    builds relative URLs (warned once), never ones naming FC's runtime.
    """
    if raw_path.startswith(PROXY_PATH):
        account = field(context, "account_id")
        region = field(context, "region")
        if isinstance(account, str) and isinstance(region, str) and account and region:
            return f"{account}.{region}.fc.aliyuncs.com"
    global _warned_no_host
    if not _warned_no_host:
        _warned_no_host = True
        logger.warning(
            "FC passed a request without a Host header (FC 2.0 on a custom domain does): "
            "the app sees no host, so URLs it builds have none; "
            'name the domain with bridge(app, host="api.example.com") (warned once).'
        )
    return None


def _headers(environ: WSGIEnviron, encoding: str, errors: str, length: int) -> tuple[Headers, int]:
    """The request's headers, and their size as FC's limit counts it (request_headers_size)."""
    headers: Headers = []
    size = 0
    content_type = environ.get("CONTENT_TYPE")
    # FC's runtime puts its default in when the client sent no Content-Type; on a request
    # without a body that default is all it can be, and the app should not see it.
    if content_type and (length or encoding != "utf-8" or content_type != FC_DEFAULT_TYPE):
        encoded = content_type.encode(encoding, errors)
        headers.append((b"content-type", encoded))
        size += len(b"content-type") + len(encoded)
    # FC sets CONTENT_LENGTH "0" on every bodiless request; clients that sent no Content-Length
    # see none, as under uvicorn.
    if length or "HTTP_CONTENT_LENGTH" in environ:
        encoded = str(length).encode()
        headers.append((b"content-length", encoded))
        size += len(b"content-length") + len(encoded)
    from_os = None
    if encoding == "utf-8":
        from_os = _os_http_variables
        if from_os is None:
            from_os = _environment_http_variables()
    for key, name, counted in _plan(environ, encoding, errors):
        value = environ[key]
        if from_os and from_os.get(key) == value:
            continue
        try:
            encoded = value.encode(encoding)  # the common case, without an error handler's cost
        except UnicodeEncodeError:
            encoded = value.encode(encoding, errors)
        headers.append((name, encoded))
        if counted:
            size += len(name) + len(encoded)
    return headers, size


def _plan(environ: WSGIEnviron, encoding: str, errors: str) -> Plan:
    """The keys of ``environ`` that stand for request headers, in order, with the header names
    (``HTTP_USER_AGENT``: ``b"user-agent"``) and whether FC's limit counts them (not x-fc-*);
    remembered per shape (see ``_plans``)."""
    shape = tuple(environ)
    plan = _plans.get(shape)
    if plan is None:
        plan = tuple(
            (key, name, name[:5] != FC_HEADER_PREFIX)
            for key in shape
            if (name := _header_name(key, encoding, errors))
        )
        if all(key.isascii() for key in shape):  # else the names depend on the encoding
            if len(_plans) >= MAX_PLANS:  # new shapes keep coming: start over
                _plans.clear()
            _plans[shape] = plan
    return plan


def _header_name(key: str, encoding: str, errors: str) -> bytes:
    """The header name an environ key stands for, or ``b""`` for a key that is no header."""
    if not key.startswith("HTTP_") or key in _NOT_HEADERS:
        return b""
    return key[5:].replace("_", "-").lower().encode(encoding, errors)


def _read_exactly(stream: WSGIInput, length: int) -> bytes:
    """Read ``length`` (> 0) bytes from wsgi.input, or fewer if it ends first.

    FC's input is a BytesIO over the whole body: reading all of it returns that very bytes
    object, so the body is never copied on the way to the app.
    """
    body = stream.read(length)
    if len(body) < length:  # servers may return short reads from a socket
        parts = [body]
        received = len(body)
        while received < length:
            chunk = stream.read(length - received)
            if not chunk:
                break
            parts.append(chunk)
            received += len(chunk)
        body = b"".join(parts)
    return body


def write_response(response: Response, start_response: StartResponse, fc: bool) -> list[bytes]:
    """Hand ``response`` to the WSGI server; returns the body as the list of the app's chunks.

    As PEP 3333 asks, an exception the app raised goes to ``start_response`` as ``exc_info``:
    FC ignores it and serves the response, other servers and test clients may re-raise it.
    """
    status = STATUS_LINES.get(response.status) or _status_line(response.status)
    # FC turns header strings back into bytes as UTF-8 (see the module docstring), and the
    # bridge only lets UTF-8 values through to it; PEP 3333 servers encode them as Latin-1.
    encoding = "utf-8" if fc else "latin-1"
    headers = []  # a loop, not a comprehension: on 3.11 that is a function call of its own
    for name, value in response.headers:
        headers.append((name.decode(encoding), value.decode(encoding)))
    error = response.error
    if error is None:
        start_response(status, headers)
    else:
        start_response(status, headers, (type(error), error, error.__traceback__))
    return response.chunks


def _status_line(code: int) -> str:
    try:
        line = f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"
    STATUS_LINES[code] = line
    return line
