"""The CLI's TARGET: ``module:attribute``, naming an ASGI app or a ``bridge(app)``."""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any

from .._bridge import Bridge
from .._errors import TargetError


def load_bridge(spec: str) -> Bridge:
    """The Bridge that TARGET names: the object itself, or ``Bridge(app)`` for an ASGI app."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise TargetError(f'TARGET "{spec}" must be in format "<module>:<attribute>".')
    if "" not in sys.path:  # as "python -m": modules are found from the working directory
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise TargetError(f'Could not import module "{module_name}".') from None
        raise TargetError(f'Could not import module "{module_name}": {exc}') from exc
    except Exception as exc:
        raise TargetError(f'Could not import module "{module_name}": {exc!r}') from exc
    try:
        target = getattr(module, attribute)
    except AttributeError:
        raise TargetError(f'Attribute "{attribute}" not found in module "{module_name}".') from None
    if isinstance(target, Bridge):
        return target
    if is_asgi_app(target):
        return Bridge(target)
    raise TargetError(
        f'TARGET "{spec}" is neither an ASGI app nor a fc_bridge.Bridge '
        f"(got {type(target).__name__}); expected an ASGI 3 app or handler = bridge(app)."
    )


def is_asgi_app(obj: Any) -> bool:
    """An ASGI 3 app: a coroutine function (or an object whose __call__ is one) of 3 arguments."""
    if not callable(obj):
        return False
    call = obj if inspect.isroutine(obj) else type(obj).__call__
    if not inspect.iscoroutinefunction(call):
        return False
    parameters = inspect.signature(obj).parameters.values()
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 3
