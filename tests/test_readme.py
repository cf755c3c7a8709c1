"""The README's code that users copy into their own projects works as shown."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_block(heading: str, language: str) -> str:
    section = (ROOT / "README.md").read_text().split(f"\n## {heading}\n", 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_test_like_fc_example_passes_in_a_users_project(tmp_path: Path) -> None:
    # A user's project: their main.py (the example app) and the README's test, nothing else.
    shutil.copy(ROOT / "examples" / "fastapi_app" / "main.py", tmp_path / "main.py")
    (tmp_path / "test_main.py").write_text(readme_block("Test like FC", "python"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_main.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
