"""A real browser loads the example's Swagger UI through FC's URL prefix.

Swagger UI only lists the API's operations once its JavaScript has fetched openapi.json, so
seeing them rendered proves the page, its assets and the spec all loaded through the prefix.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from examples.fastapi_app import main
from fc_bridge import Bridge
from fc_bridge.local import asgi_app

from .conftest import PREFIX, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# CI sets FC_BRIDGE_REQUIRE_BROWSER: there a missing Chromium fails the test, never skips it.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None and not os.environ.get("FC_BRIDGE_REQUIRE_BROWSER"),
        reason="needs Debian's chromium package (.ci/run installs it)",
    ),
]


def rendered_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium."""
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        # This machine's network is closed: no background calls to Google's hosts.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=20000",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_swagger_ui_renders_the_examples_operations_under_the_prefix(tmp_path: Path) -> None:
    with running_server(asgi_app(Bridge(main.app), "fc2", prefix=PREFIX)) as url:
        dom = rendered_dom(f"{url}{PREFIX}/docs", tmp_path / "profile")
    paths = set(re.findall(r'class="opblock-summary-path"[^>]*data-path="([^"]+)"', dom))
    assert {"/items/{item_id}", "/items", "/upload", "/login", "/stream"} <= paths
    assert "Failed to load API definition" not in dom


@pytest.mark.parametrize("mode", ["fc2", "fc3"])
def test_the_cookie_check_recipe_finds_every_cookie_in_a_real_browser(
    mode: str, tmp_path: Path
) -> None:
    # The README's recipe for checking Set-Cookie on a deployment, run against the local
    # front ends: on FC 3.0 the three cookies travel as case-varied keys of one JSON object.
    prefix = PREFIX if mode == "fc2" else None
    with running_server(asgi_app(Bridge(main.app), mode, prefix=prefix)) as url:
        dom = rendered_dom(f"{url}{prefix or ''}/cookies/set", tmp_path / "profile")
    assert '"all_arrived":true' in dom, dom[-500:]
    assert '"received":["fcb_one","fcb_two","fcb_three"]' in dom
