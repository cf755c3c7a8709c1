"""What FC says about the function, and the contexts made from it where FC sends no object.

A web function's request carries its context as ``x-fc-*`` headers (:func:`context_from_headers`);
local tooling makes FC-shaped contexts from a :class:`FunctionInfo` (:func:`make_context`).
Credentials come only from where FC puts them (those headers, or the ``ALIBABA_CLOUD_*``
environment variables), are never invented, and never appear in a repr.
Not needed by FC 2.0 and FC 3.0 built-in runtimes: only the web function and local tooling
import this module.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

CREDENTIAL_VARIABLES = (
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
)
FUNCTION_LOGGER = logging.getLogger("fc_bridge.function")  # context.logger, as FC's
# x-fc-* request headers a web function gets; the credential ones never reach the app's headers.
CREDENTIAL_HEADERS = (b"x-fc-access-key-id", b"x-fc-access-key-secret", b"x-fc-security-token")


@dataclass(frozen=True)
class FunctionInfo:
    """What FC knows about the function: the non-secret half of a context.

    Every field can be set by an option or by the environment variable FC's runtimes set
    (``FC_FUNCTION_NAME``, ``FC_REGION``, ...), options first.
    """

    name: str = "fc-bridge-local"
    handler: str = "index.handler"
    memory: int = 512
    timeout: int = 60
    region: str = "cn-hangzhou"
    account_id: str = "000000000000"
    service: str = "fc-bridge-local"
    qualifier: str = "LATEST"
    version_id: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> FunctionInfo:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            text = next(filter(None, (environ.get(v) for v in ENVIRONMENT.get(field.name, ()))), "")
            if text:
                values[field.name] = int(text) if field.type == "int" and text.isdigit() else text
        values.update({k: v for k, v in options.items() if v is not None})
        return replace(cls(), **values)


# The variables FC's runtimes set, first one found wins (FC_FACTS section 8). FC sets none for
# the timeout: it comes from an option, or a web function's x-fc-function-timeout header.
ENVIRONMENT = {
    "name": ("FC_FUNCTION_NAME",),
    "handler": ("FC_FUNCTION_HANDLER",),
    "memory": ("FC_FUNCTION_MEMORY_SIZE",),
    "region": ("FC_REGION",),
    "account_id": ("FC_ACCOUNT_ID",),
    "service": ("FC_SERVICE_NAME",),
    "qualifier": ("FC_QUALIFIER",),
    "version_id": ("FC_FUNCTION_VERSION", "FC_VER_ID"),  # Debian 11+ runtimes; Debian 10
}


class Credentials:
    """The function role's temporary credentials; its repr shows none of the secrets."""

    __slots__ = ("access_key_id", "access_key_secret", "security_token")

    def __init__(self, access_key_id: str, access_key_secret: str, security_token: str) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.security_token = security_token

    _redacted_repr = True

    def __repr__(self) -> str:
        return "Credentials(access_key_id=<redacted>, access_key_secret=<redacted>, ...)"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials | None:
        environ = os.environ if environ is None else environ
        key_id, secret, token = (environ.get(name, "") for name in CREDENTIAL_VARIABLES)
        return cls(key_id, secret, token) if key_id and secret else None


class _Attributes:
    """A plain object of attributes with a repr naming them (context.function, ...)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({inner})"


class Function(_Attributes):
    name: str
    handler: str
    memory: int
    timeout: int
    version_id: str  # FC 3.0 only
    qualifier: str  # FC 3.0 only


class Service(_Attributes):  # FC 2.0 only
    name: str
    log_project: str
    log_store: str
    qualifier: str
    version_id: str


class LocalContext(_Attributes):
    """A context shaped like FC 2.0's ``FCContext`` (``generation=2``) or FC 3.0's (``3``).

    The attributes below exist on one shape or both, as on FC: read them with getattr.
    """

    request_id: str
    account_id: str
    region: str
    function: Function
    logger: logging.Logger
    credentials: Credentials | None  # FC 2.0 only
    service: Service  # FC 2.0 only
    retry_count: int  # FC 2.0 only
    tracing: object  # FC 2.0 only
    log_project: str  # FC 3.0 only
    log_store: str  # FC 3.0 only

    _redacted_repr = True  # for_app passes it as is

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{k}={v!r}" for k, v in self.__dict__.items() if k not in ("credentials", "logger")
        )
        return f"LocalContext({inner})"


def make_context(
    info: FunctionInfo,
    generation: int,
    *,
    request_id: str | None = None,
    credentials: Credentials | None = None,
) -> LocalContext:
    """A fresh context for one invocation."""
    rid = request_id or str(uuid.uuid4())
    logger = FUNCTION_LOGGER
    if generation == 3:  # FC 3.0: no credentials, no service (FC_FACTS section 3)
        return LocalContext(
            request_id=rid,
            account_id=info.account_id,
            region=info.region,
            function=Function(
                name=info.name,
                handler=info.handler,
                memory=info.memory,
                timeout=info.timeout,
                version_id=info.version_id,
                qualifier=info.qualifier,
            ),
            log_project="",
            log_store="",
            logger=logger,
        )
    return LocalContext(
        request_id=rid,
        credentials=credentials if credentials is not None else Credentials.from_env(),
        function=Function(
            name=info.name, handler=info.handler, memory=info.memory, timeout=info.timeout
        ),
        service=Service(
            name=info.service,
            log_project="",
            log_store="",
            qualifier=info.qualifier,
            version_id=info.version_id,
        ),
        region=info.region,
        account_id=info.account_id,
        retry_count=0,
        tracing=None,
        logger=logger,
    )


# The x-fc-* headers that describe the function, not the request: FC sends the same values with
# every request, so what they make is made once (FUNCTION_HEADERS order is _describe's).
FUNCTION_HEADERS = tuple(
    b"x-fc-" + name
    for name in (
        b"function-name",
        b"function-handler",
        b"function-memory",
        b"function-timeout",
        b"region",
        b"account-id",
        b"service-name",
        b"qualifier",
        b"version-id",
    )
)
# The header values -> (the FunctionInfo they complete, the result): matched by identity, as
# hashing a FunctionInfo costs more than the rest of the lookup.
_described: dict[tuple[bytes | None, ...], tuple[FunctionInfo, FunctionInfo]] = {}


def context_from_headers(headers: Mapping[bytes, bytes], info: FunctionInfo) -> LocalContext:
    """The context of a web function's request, from the ``x-fc-*`` headers FC sends with it
    (FC_FACTS section 5); what a header does not say comes from ``info``."""
    return header_context(headers.get(b"x-fc-request-id"), headers, info)


def header_context(
    request_id: bytes | None,
    headers: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]],
    info: FunctionInfo,
) -> HeaderContext:
    """A web function request's context: its id now (the ``x-fc-request-id`` header's value;
    a new one if none), the rest from ``headers`` (a dict of them or their list) when first
    read, what they do not say from ``info``. Made without a class call, which costs more than
    the rest (one per request)."""
    context: HeaderContext = _new(HeaderContext)
    context.request_id = request_id.decode("latin-1") if request_id else str(uuid.uuid4())
    context._headers = headers
    context._info = info
    return context


_new = object.__new__


class HeaderContext(LocalContext):
    """A web function's context, FC 2.0's shape: its request id at once, the other fields made
    from FC's headers when the app first reads one (most requests never do)."""

    __slots__ = ("_headers", "_info")  # made by header_context()
    _headers: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]] | None
    _info: FunctionInfo

    def __getattr__(self, name: str) -> Any:
        # Only for an attribute not found: every field is made on the first such read.
        if name in HeaderContext.__slots__ or not self._fill():
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self, name)

    def __repr__(self) -> str:
        self._fill()
        return super().__repr__()

    def _fill(self) -> bool:
        """Make the fields from the headers; False if they were made already."""
        headers = self._headers
        if headers is None:
            return False
        self._headers = None
        get = (headers if isinstance(headers, Mapping) else dict(headers)).get
        described = tuple(map(get, FUNCTION_HEADERS))
        info = self._info
        known = _described.get(described)
        if known is not None and known[0] is info:
            function = known[1]
        else:
            function = _describe(info, described)
            if len(_described) < 64:  # the same few sets of values, on every request
                _described[described] = (info, function)
        key_id, secret, token = map(get, CREDENTIAL_HEADERS)
        credentials = (
            Credentials(key_id.decode("latin-1"), secret.decode("latin-1"), _text(token) or "")
            if key_id and secret
            else None
        )
        made = make_context(function, 2, request_id=self.request_id, credentials=credentials)
        made.retry_count = _number(get(b"x-fc-retry-count"), 0)
        self.__dict__.update(made.__dict__)
        return True


def _describe(info: FunctionInfo, values: tuple[bytes | None, ...]) -> FunctionInfo:
    name, handler, memory, timeout, region, account_id, service, qualifier, version_id = values
    return replace(
        info,
        name=_text(name) or info.name,
        handler=_text(handler) or info.handler,
        memory=_number(memory, info.memory),
        timeout=_number(timeout, info.timeout),
        region=_text(region) or info.region,
        account_id=_text(account_id) or info.account_id,
        service=_text(service) or info.service,
        qualifier=_text(qualifier) or info.qualifier,
        version_id=_text(version_id) or info.version_id,
    )


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value else None


def _number(value: bytes | None, default: int) -> int:
    return int(value) if value and value.isdigit() else default
