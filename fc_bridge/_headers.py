"""Response headers: what an app may send, and which of them FC keeps for itself.

Every path checks the app's ``http.response.start`` here, before anything reaches FC or a
client. A header that would split the response (CR or LF in a value, a name that is not an HTTP
token) or that is not bytes refuses the whole response with FC's 502: passing it on would let
whoever controls a header value write headers of their own. The rules are uvicorn's, so an app
that runs under uvicorn runs here.

Which headers FC reserves depends on how the function is called (README, "Reserved headers"):

- FC's built-in runtimes (``handler(environ, start_response)``, ``handler(event, context)``):
  ``x-fc-*`` and the framing headers FC sets itself (``connection``, ``content-length``,
  ``date``, ``keep-alive``, ``server``), plus ``content-disposition: attachment``, which FC
  refuses on its default domain. They are dropped, with one warning per name and process.
- A web function (custom runtime): the HTTP server frames the response, so only ``x-fc-*`` and
  the hop-by-hop headers are dropped; ``x-fc-status`` passes, FC reads it.
- A plain WSGI server (neither FC's environ keys nor a context): only hop-by-hop headers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._limits import Limits, Rejection, bad_response

if TYPE_CHECKING:
    from ._types import Headers

logger = logging.getLogger("fc_bridge.http")

# uvicorn's rules (protocols/http/httptools_impl.py): a name is an RFC 9110 token, a value has
# no control character but HTAB. A name is checked with bytes.translate(None, ALLOWED), which
# leaves only what is not allowed (once per name: Policy.kinds). A value is checked on every
# response, so with the cheaper translate(MAP), which maps each byte that is not allowed to
# another byte and the others to themselves: a valid value comes back equal, and no deletion
# table is built per call (a quarter of the cost). Both tables are literals or built in C:
# nothing compiled or looped over 256 bytes at cold start.
_TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # tchar
_CONTROL = bytes([*range(0x09), *range(0x0A, 0x20), 0x7F])  # all a value may not hold
_SHIFTED = bytes(c ^ 0x40 for c in _CONTROL)
_VALUE_MAP = bytes(range(256)).translate(bytes.maketrans(_CONTROL, _SHIFTED))

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
    }
)
FC_BUILTIN = HOP_BY_HOP | {b"content-length", b"date", b"server"}
# The server frames the response and says who it is: the app's Content-Length passes (it
# matters for HEAD and for downloads), its Date and Server do not.
WEB = HOP_BY_HOP | {b"date", b"server"}

_warned: set[bytes] = set()

# What a policy does with a header name (see Policy.kind).
PASS, DROP, QUIET, CHECK, BAD = range(5)
MAX_KINDS = 1024


class Policy:
    """Which response headers one serving path passes on."""

    __slots__ = ("attachment", "fc_headers", "kinds", "names", "passed", "utf8")

    def __init__(
        self,
        names: frozenset[bytes],
        *,
        fc_headers: bool,
        attachment: bool,
        utf8: bool,
        passed: frozenset[bytes] = frozenset(),
    ) -> None:
        self.names = names  # dropped outright
        self.fc_headers = fc_headers  # x-fc-* dropped too
        self.attachment = attachment  # content-disposition: attachment dropped
        self.utf8 = utf8  # values must be UTF-8: FC carries them as text
        self.passed = passed  # x-fc-* names that pass all the same
        # Header name -> what this policy does with it: the same few names come every time.
        self.kinds: dict[bytes, int] = {}

    def kind(self, name: object) -> int:
        """What the policy does with a header named ``name``: PASS it on, DROP it with a
        warning, drop it QUIET (Content-Length, which FC sets from the body), CHECK its value
        (x-fc-* and Content-Disposition: ``_reserved``), or refuse it as BAD (not an HTTP
        token). Remembered for bytes names."""
        if type(name) is not bytes:
            return BAD
        if not name or name.translate(None, _TOKEN):
            kind = BAD
        else:
            key = name.lower()
            if key in self.names:
                kind = QUIET if key == b"content-length" else DROP
            elif (self.fc_headers and key[:5] == b"x-fc-") or key == b"content-disposition":
                kind = CHECK
            else:
                kind = PASS
        if len(self.kinds) < MAX_KINDS:
            self.kinds[name] = kind
        return kind


BUILTIN = Policy(FC_BUILTIN, fc_headers=True, attachment=True, utf8=True)
WEB_FUNCTION = Policy(
    WEB, fc_headers=True, attachment=False, utf8=False, passed=frozenset({b"x-fc-status"})
)
PLAIN = Policy(HOP_BY_HOP, fc_headers=False, attachment=False, utf8=False)


def bad_status(status: object) -> Rejection:
    """FC's 502 for a status that is not an int from 100 to 599."""
    return bad_response(f"The app's response status {status!r} is not an int from 100 to 599.")


def checked(raw: object, limits: Limits, policy: Policy) -> Headers | Rejection:
    """The headers to pass on, or FC's 502 naming the first bad header (never its value)."""
    headers: Headers = []
    size = 0
    kinds = policy.kinds
    utf8 = policy.utf8
    try:
        for name, value in raw:  # type: ignore[attr-defined]
            kind = kinds.get(name)
            if kind is None:
                kind = policy.kind(name)
            if type(value) is not bytes or kind == BAD:
                return _refusal(raw, utf8)
            if kind != PASS:  # the common case takes one comparison here
                if kind == DROP:  # its value goes nowhere, so it need not be checked
                    _warn(name.lower())
                    continue
                if kind == QUIET:
                    continue
            if value.translate(_VALUE_MAP) != value or (
                utf8 and not value.isascii() and not _is_utf8(value)
            ):
                return _refusal(raw, utf8)
            if kind == CHECK and _reserved(name.lower(), value, policy):
                continue
            headers.append((name, value))
            size += len(name) + len(value)
    except (TypeError, ValueError):
        return _refusal(raw, utf8)
    rejection = limits.check_response_headers(size)
    return headers if rejection is None else rejection


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def _refusal(raw: object, utf8: bool) -> Rejection:
    """The 502 for headers ``checked`` found wrong, naming the first bad one and why."""
    try:
        pairs = list(raw)  # type: ignore[call-overload]
    except TypeError:
        return bad_response(f"The app's response headers are {type(raw).__name__}, not a list.")
    for index, pair in enumerate(pairs):
        try:
            name, value = pair
        except (TypeError, ValueError):
            return bad_response(f"Response header {index} is not a (name, value) pair.")
        problem = _problem(name, value, utf8)
        if problem is not None:
            shown = repr(name) if type(name) is bytes else f"number {index}"
            return bad_response(f"The app's response header {shown} {problem}.")
    raise AssertionError("checked() refused headers that _refusal finds fine")  # pragma: no cover


def _problem(name: object, value: object, utf8: bool) -> str | None:
    if type(name) is not bytes:
        return f"has a {type(name).__name__} name, not bytes"
    if type(value) is not bytes:
        return f"has a {type(value).__name__} value, not bytes"
    if not name or name.translate(None, _TOKEN):
        return "has a name that is not an HTTP token"
    if value.translate(_VALUE_MAP) != value:
        return "has a value with a control character (CR, LF or NUL, say)"
    if utf8 and not value.isascii():
        try:
            value.decode()
        except UnicodeDecodeError:
            return "has a value that is not UTF-8, which FC cannot carry"
    return None


def _reserved(key: bytes, value: bytes, policy: Policy) -> bool:
    """Whether an x-fc-* or Content-Disposition header is FC's: dropped, with a warning."""
    if policy.fc_headers and key.startswith(b"x-fc-") and key not in policy.passed:
        _warn(key)
        return True
    if (
        policy.attachment
        and key == b"content-disposition"
        and value.lower().startswith(b"attachment")
    ):
        _warn(key, "content-disposition: attachment")
        return True
    return False


def _warn(key: bytes, shown: str | None = None) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(
            "Dropped response header %r: FC does not let functions set it "
            "(warned once per process).",
            shown or key.decode("latin-1"),
        )
