"""FC 3.0's HTTP trigger: a JSON event in, a response dict out.

FC 3.0 calls a built-in runtime's handler as ``handler(event, context)``, ``event`` being the
HTTP request as JSON bytes (FC_FACTS section 2), and sends back what the handler returns:
``{"statusCode", "headers", "body", "isBase64Encoded"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ._limits import Rejection, bad_request, bad_response, request_headers_size
from ._scope import CREDENTIAL_HEADERS, http_scope, resolve, server_of
from ._scope import client as choose_client
from ._scope import scheme as choose_scheme

if TYPE_CHECKING:
    from ._http import Response
    from ._options import Options
    from ._types import Headers, HTTPScope

# Set-Cookie spellings a JSON object can hold apart (see _cookie_key): 2**9.
MAX_COOKIES = 512
_CREDENTIAL_NAMES = frozenset(name.decode() for name in CREDENTIAL_HEADERS)
_SPECIAL_NAMES = _CREDENTIAL_NAMES | {"host", "x-fc-invocation-type"}

# Bodies sent as text (when they are valid UTF-8); everything else goes base64-encoded.
TEXT_TYPES = (
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "application/graphql",
    "image/svg+xml",
)
IDENTITY = (b"", b"identity")


# json.loads without its per-call work (telling the encoding, its keyword checks, two regex
# matches for the surrounding whitespace): FC's events are UTF-8 and start with "{".
_raw_decode = json.JSONDecoder().raw_decode


def load_event(event: object) -> dict[str, Any] | None:
    """The event as a dict: FC passes JSON bytes; tests and tools may pass a str or a dict."""
    if type(event) is bytes and event[:1] == b"{":
        try:
            text = event.decode("utf-8", "surrogatepass")  # as json.loads decodes UTF-8
            loaded, end = _raw_decode(text)
        except (ValueError, RecursionError):  # not UTF-8 (UTF-16?), or not JSON: json.loads
            pass  # tells which
        else:
            if end == len(text):
                return loaded  # type: ignore[no-any-return]  # an object: it starts with "{"
    if isinstance(event, dict):
        return event
    if isinstance(event, (bytes, bytearray, memoryview, str)):
        try:
            loaded = json.loads(bytes(event) if not isinstance(event, str) else event)
        except (ValueError, RecursionError):  # also UnicodeDecodeError; too deeply nested
            return None
        return loaded if isinstance(loaded, dict) else None
    return None


def is_http_event(event: dict[str, Any]) -> bool:
    """Whether an event comes from an HTTP trigger (other triggers send other shapes)."""
    context = event.get("requestContext")
    return isinstance(context, dict) and isinstance(context.get("http"), dict)


def describe(event: object) -> str:
    """A short description of an event's shape for error messages (never its values)."""
    loaded = load_event(event)
    if loaded is not None:
        return f"a JSON object with keys {sorted(loaded)[:8]}"
    return f"{type(event).__name__} that is not a JSON object"


def parse_event(
    event: dict[str, Any], context: Any, options: Options
) -> tuple[HTTPScope, bytes] | Rejection:
    """Build the ASGI scope and the body of the HTTP request an FC 3.0 event describes."""
    request = event["requestContext"]
    http = request["http"]
    method = http.get("method")
    raw = event.get("rawPath", http.get("path", "/"))
    if not isinstance(method, str) or not method or not isinstance(raw, str):
        return bad_request("The event has no requestContext.http.method or rawPath string.")
    if raw[:1] != "/":
        return bad_request(f"The event's rawPath must start with '/', got {raw[:50]!r}.")
    raw_path = raw.encode("utf-8", "surrogatepass") or b"/"
    root, path, raw_path = resolve(raw_path, options.root_path)
    parameters = event.get("queryParameters")
    if parameters is not None and not isinstance(parameters, dict):
        return bad_request("The event's queryParameters must be an object.")
    query = _query_string(parameters)

    fields = event.get("headers")
    if fields is None:
        fields = {}
    elif not isinstance(fields, dict):
        return bad_request(f"The event's headers must be an object, got {type(fields).__name__}.")
    headers: Headers = []
    host: str | None = None
    secrets = is_async = False
    for name, value in fields.items():
        if not isinstance(value, str):
            return bad_request(f"The event's header {name!r} is not a string.")
        key = name.lower()
        if key in _SPECIAL_NAMES:
            if key == "host":
                host = value
            elif key == "x-fc-invocation-type":
                is_async = is_async or value.lower() == "async"
            else:  # a credential
                secrets = True
                continue
        try:  # the common case, without an error handler's cost
            headers.append((key.encode(), value.encode()))
        except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
            headers.append(
                (key.encode("utf-8", "surrogatepass"), value.encode("utf-8", "surrogatepass"))
            )
    if host is None:  # FC's own sample events carry none: the function URL's domain
        host = options.host
        if host is None:
            domain = request.get("domainName")
            host = domain if isinstance(domain, str) and domain else None
        if host is not None:
            headers.append((b"host", host.encode("idna")))

    body_text = event.get("body")
    if body_text is None:
        body_text = ""
    if not isinstance(body_text, str):
        return bad_request("The event's body must be a string.")
    if event.get("isBase64Encoded") is True:  # only JSON's true: "false" is a true value too
        try:
            body = base64.b64decode(body_text, validate=True)
        except (binascii.Error, ValueError):
            return bad_request("The event's body is marked isBase64Encoded but is not base64.")
    else:
        body = body_text.encode("utf-8", "surrogatepass")

    target = len(raw_path) + (len(query) + 1 if query else 0)
    size = request_headers_size(headers)
    rejection = options.limits.check_request(target, size, len(body), is_async=is_async)
    if rejection is not None:
        return rejection

    forwarded = options.forwarded
    scheme = choose_scheme(headers, options.scheme, "https", forwarded)  # function URLs: HTTPS
    source = http.get("sourceIp")
    reported = (source, 0) if isinstance(source, str) and source else None
    scope = http_scope(
        method,
        scheme,
        http.get("protocol"),  # protocol
        (root, path, raw_path),  # paths
        query,
        headers,
        choose_client(headers, reported, forwarded) if forwarded else reported,  # client
        server_of(host, scheme) if host else None,  # server
        context,
        raw + ("?" + query.decode("ascii") if query else ""),  # uri
    )
    if secrets:  # the app's copy of the event carries no credential either
        event = {
            **event,
            "headers": {k: v for k, v in fields.items() if k.lower() not in _CREDENTIAL_NAMES},
        }
    scope["fc.event"] = event  # type: ignore[typeddict-unknown-key]
    return scope, body


def _query_string(parameters: Any) -> bytes:
    """The query string, rebuilt from FC's ``queryParameters`` object.

    FC joins the values of a repeated parameter with a comma (``?p=a&p=b`` arrives as
    ``{"p": "a,b"}``), and a value may itself contain a comma, so the two cannot be told apart.
    The bridge does not guess: the app gets one value, ``"a,b"``, exactly as FC delivered it.
    """
    if not parameters or not isinstance(parameters, dict):
        return b""
    pairs = []
    for name, value in parameters.items():
        for one in value if isinstance(value, list) else [value]:
            pairs.append(f"{quote(str(name), safe='')}={quote(str(one), safe='')}")
    return "&".join(pairs).encode("ascii")


def event_response(response: Response, set_cookie: str) -> dict[str, Any] | Rejection:
    """The dict FC 3.0 turns into the HTTP response, or FC's 502 if it cannot carry it."""
    headers: dict[str, str] = {}
    cookies = 0
    content_type = content_encoding = b""
    for raw_name, raw_value in response.headers:
        name = raw_name.decode().lower()  # checked: tokens, and UTF-8 values
        value = raw_value.decode()
        if name == "content-type":
            content_type = raw_value.lower()
        elif name == "content-encoding":
            content_encoding = raw_value.strip().lower()
        if name == "set-cookie" and set_cookie == "case":
            if cookies == MAX_COOKIES:
                return bad_response(
                    f"The response has more than {MAX_COOKIES} Set-Cookie headers, more than "
                    'FC 3.0\'s response can carry with set_cookie="case".'
                )
            headers[_cookie_key(cookies)] = value
            cookies += 1
        elif name in headers:
            # RFC 9110 5.3: repeated field lines combine into one, comma-separated.
            headers[name] = f"{headers[name]}, {value}"
        else:
            headers[name] = value
    body = b"".join(response.chunks)
    text = as_text(body, content_type, content_encoding)
    return {
        "statusCode": response.status,
        "headers": headers,
        "body": text if text is not None else base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": text is None,
    }


def _cookie_key(n: int) -> str:
    """The n-th spelling of Set-Cookie: "Set-Cookie", "sEt-Cookie", "SEt-Cookie", ...

    HTTP field names are case-insensitive, so every spelling is a Set-Cookie header to a
    browser, while a JSON object keeps them as distinct keys. 2**9 spellings exist.
    """
    letters = [i for i, c in enumerate("set-cookie") if c.isalpha()]
    chars = list("Set-Cookie")
    for bit, index in enumerate(letters):
        if n >> bit & 1:
            chars[index] = chars[index].swapcase()
    return "".join(chars)


# Content-Type value -> whether it names text: the same few come every time.
_textual: dict[bytes, bool] = {}


def as_text(body: bytes, content_type: bytes, content_encoding: bytes) -> str | None:
    """``body`` as text when FC can carry it as text, else None (it goes base64-encoded)."""
    if content_encoding not in IDENTITY:
        return None  # gzip, br, ...: bytes, whatever the content type says
    textual = _textual.get(content_type)
    if textual is None:
        textual = _is_textual(content_type)
        if len(_textual) < 256:
            _textual[content_type] = textual
    if not textual:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_textual(content_type: bytes) -> bool:
    media = content_type.partition(b";")[0].strip().decode("latin-1")
    return (
        not media
        or media.startswith("text/")
        or media in TEXT_TYPES
        or media.endswith(("+json", "+xml"))
    )
