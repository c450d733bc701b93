"""The public import paths users rely on keep working, whatever the package's inner layout."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

import geventdev


def test_top_level_api() -> None:
    from geventdev.cli.main import run
    from geventdev.testing.api import ServerError, serve
    from geventdev.testing.process import Server

    assert (geventdev.run, geventdev.serve) == (run, serve)
    assert (geventdev.Server, geventdev.ServerError) == (Server, ServerError)
    with pytest.raises(AttributeError):
        geventdev.nothing_here  # noqa: B018


def test_production_helpers_keep_their_paths() -> None:
    assert callable(importlib.import_module("geventdev.asyncviews").enable)
    worker = importlib.import_module("geventdev.workers").GeventWebSocketWorker
    assert worker.__name__ == "GeventWebSocketWorker"


@pytest.mark.parametrize(
    ("group", "name"),
    [("console_scripts", "geventdev"), ("flask.commands", "gevent"), ("pytest11", "geventdev")],
)
def test_entry_points_load(group: str, name: str) -> None:
    (entry,) = [e for e in entry_points(group=group) if e.name == name]
    assert entry.load() is not None


def test_python_dash_m_entries() -> None:
    """``python -m geventdev`` and ``python -m geventdev.cli`` are the same command."""
    for module in ("geventdev", "geventdev.cli"):
        result = subprocess.run(
            [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0 and "Usage: geventdev" in result.stdout, result.stderr
