"""A dict context as the app sees it: tests and local tools often pass the context as a dict.

FC itself passes objects, so this module is imported only when a dict context first comes
(``_context.for_app``), off every deployed function's cold start.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

SECRET_KEYS = frozenset(
    {
        "credentials",
        "access_key_id",
        "access_key_secret",
        "security_token",
        "accessKeySecret",
        "accessKeyId",
        "securityToken",
    }
)


class AppContext(Mapping[str, Any]):
    """A dict context as the app sees it: attributes and keys both work, nested dicts too,
    and its repr names the keys but shows no credential."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(name) from None
        return AppContext(value) if isinstance(value, Mapping) else value

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return AppContext(value) if isinstance(value, Mapping) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{k!r}: <redacted>" if k in SECRET_KEYS else f"{k!r}: {self[k]!r}" for k in self._data
        )
        return "AppContext({" + inner + "})"

    __str__ = __repr__
