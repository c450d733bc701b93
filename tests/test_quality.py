"""The house rules, checked with the suite: ruff, mypy --strict, small modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 250


@pytest.mark.parametrize(
    "tool",
    [
        ["ruff", "check", "geventdev", "tests", "benchmarks", "examples"],
        ["ruff", "format", "--check", "geventdev", "tests", "benchmarks", "examples"],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_tool_is_clean(tool: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *tool], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_is_too_long() -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "geventdev").glob("*.py")}
    assert {n: c for n, c in lengths.items() if c > MAX_MODULE_LINES} == {}
