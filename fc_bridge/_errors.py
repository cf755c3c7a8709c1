"""The exceptions fc_bridge raises: the public ones, and the one it raises inside an app's send."""

from __future__ import annotations


class FCBridgeError(Exception):
    """Base class of every exception fc_bridge raises."""


class ConfigError(FCBridgeError, ValueError):
    """An option given to the bridge or the CLI is not valid."""


class LifespanError(FCBridgeError):
    """The application's lifespan startup or shutdown failed."""


class UnsupportedEventError(FCBridgeError, TypeError):
    """The handler received an event that is not an HTTP request and no ``on_event`` was given."""


class ReentrantCallError(FCBridgeError, RuntimeError):
    """The handler was called from inside the bridge's own event loop, which would deadlock."""


class TargetError(FCBridgeError):
    """The CLI's TARGET cannot be imported, or is neither an ASGI app nor a Bridge."""


class ResponseRefused(OSError):
    """Raised inside the app's ``send`` when the bridge refuses its response (a bad header, a
    body over the limit). An ``OSError``, because ASGI 2.4 apps treat a failing ``send`` as a
    client that went away and stop producing; the bridge answers FC's 502 instead."""
