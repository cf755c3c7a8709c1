"""A pytest fixture for testing functions the way FC calls them (registered as a plugin).

def test_items(fc_client) -> None:
    client = fc_client(handler, mode="fc3")  # initializer now, pre_stop after the test
    assert client.get("/items/1").status_code == 200
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..testing import FCClient


@pytest.fixture
def fc_client() -> Iterator[Callable[..., FCClient]]:
    """Makes started :class:`~fc_bridge.testing.FCClient` s; each is stopped after the test."""
    started: list[FCClient] = []

    def make(handler: Any, mode: str = "fc2", **options: Any) -> FCClient:
        client = FCClient(handler, mode, **options).__enter__()
        started.append(client)
        return client

    yield make
    for client in reversed(started):
        client.__exit__(None, None, None)
