"""Which changes matter, debounce, and the real watchdog observer."""

from __future__ import annotations

import os
import queue
import sysconfig
from pathlib import Path

import pytest
from watchdog.events import (
    DirModifiedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from geventdev.monitor.watch import ChangeFilter, Debouncer, WatchdogWatcher, project_root


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/p/app.py", "restart"),
        ("/p/pkg/views.py", "restart"),
        ("/p/.env", "restart"),
        ("/p/.flaskenv", "restart"),
        ("/p/templates/index.html", "refresh"),
        ("/p/static/style.css", "refresh"),
        ("/p/__pycache__/app.cpython-311.pyc", None),
        ("/p/.git/index", None),
        ("/p/node_modules/x/index.py", None),
        ("/p/.venv/lib/site.py", None),
        ("/p/.mypy_cache/x.py", None),
        ("/p/4913", None),
        ("/p/app.py~", None),
        ("/p/.app.py.swp", None),
        ("/p/.app.py.swx", None),
        ("/p/app.py___jb_tmp___", None),
        ("/p/app.py___jb_old___", None),
        ("/p/.#app.py", None),
        ("/p/app.log", None),
        ("/p/db.sqlite3", None),
        ("/p/db.sqlite3-journal", None),
        ("/p/app.pyc", None),
    ],
)
def test_classify(path: str, kind: str | None) -> None:
    assert ChangeFilter().classify(path) == kind


def test_interpreter_trees_are_ignored() -> None:
    assert ChangeFilter().classify(os.path.join(sysconfig.get_paths()["stdlib"], "x.py")) is None


def test_exclude_patterns_match_path_or_name() -> None:
    changes = ChangeFilter(exclude_patterns=["*/migrations/*", "local_*.py"])
    assert changes.classify("/p/migrations/0001.py") is None
    assert changes.classify("/p/local_settings.py") is None
    assert changes.classify("/p/settings.py") == "restart"


def test_extra_files_restart_whatever_their_name() -> None:
    assert (
        ChangeFilter(extra_files=["/etc/app/settings.toml"]).classify("/etc/app/settings.toml")
        == "restart"
    )


def test_event_paths_skip_opened_and_unwritten_closes() -> None:
    changes = ChangeFilter()
    assert changes.event_paths(FileOpenedEvent("/p/app.py")) == []
    assert changes.event_paths(FileClosedNoWriteEvent("/p/app.py")) == []
    assert changes.event_paths(DirModifiedEvent("/p")) == []
    assert changes.event_paths(FileModifiedEvent("/p/app.py")) == ["/p/app.py"]
    assert changes.event_paths(FileClosedEvent("/p/app.py")) == ["/p/app.py"]
    # an atomic save is a move: the destination is what matters
    assert changes.event_paths(FileMovedEvent("/p/.app.py.tmp", "/p/app.py")) == [
        "/p/.app.py.tmp",
        "/p/app.py",
    ]


def test_debounce_waits_for_quiet_however_long_the_burst() -> None:
    bounce = Debouncer(quiet=0.125)
    assert bounce.deadline() is None and bounce.pop_due(0.0) == {}
    bounce.add("/p/a.py", "restart", 0.0)
    bounce.add("/p/t.html", "refresh", 0.0625)
    assert bounce.pop_due(0.125) == {}
    assert bounce.deadline() == 0.1875
    assert bounce.pop_due(0.1875) == {"/p/a.py": "restart", "/p/t.html": "refresh"}
    for i in range(64):  # a change every 62.5 ms for 4 s: one batch, when it stops
        bounce.add(f"/p/m{i}.py", "restart", 2.0 + i * 0.0625)
        assert bounce.pop_due(2.0 + i * 0.0625 + 0.0624) == {}
    # the quiet spell grew with the burst: a quarter of its length, at most half a second
    assert bounce.deadline() == 2.0 + 63 * 0.0625 + 0.5
    assert len(bounce.pop_due(10.0)) == 64


def test_a_change_without_pause_cannot_hold_a_restart_back_forever() -> None:
    bounce = Debouncer(quiet=0.05, cap=10.0)
    bounce.add("/p/app.py", "restart", 0.0)
    for i in range(1, 500):  # a file written every 40 ms (less than the quiet spell), for 20 s
        bounce.add("/p/data/state.json", "refresh", i * 0.04)
        if bounce.pop_due(i * 0.04 + 0.02):
            break
    assert bounce.deadline() is None and 9.9 < i * 0.04 + 0.02 < 10.1  # out at the cap, 10 s


def test_restart_wins_over_refresh_for_the_same_path() -> None:
    bounce = Debouncer(quiet=0.1)
    bounce.add("/p/x", "restart", 0.0)
    bounce.add("/p/x", "refresh", 0.01)
    assert bounce.pop_due(1.0) == {"/p/x": "restart"}


@pytest.mark.parametrize(
    ("target", "files", "root"),
    [
        ("app.py", ["app.py"], ""),
        ("sub/app.py", ["sub/app.py"], "sub"),
        ("pkg/app.py", ["pkg/__init__.py", "pkg/app.py"], ""),
        (
            "src/pkg/sub/mod.py:app",
            ["src/pkg/__init__.py", "src/pkg/sub/__init__.py", "src/pkg/sub/mod.py"],
            "src",
        ),
        ("pkg", ["pkg/__init__.py"], ""),
        ("mysite.wsgi:application", [], ""),
        (None, [], ""),
    ],
)
def test_project_root_matches_prepare_import(tmp_path: Path, target, files, root) -> None:
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    assert project_root(target, str(tmp_path)) == (tmp_path / root).resolve()


def test_real_watchdog_sees_an_atomic_save_and_ignores_noise(tmp_path: Path) -> None:
    events: queue.Queue[tuple[str, str]] = queue.Queue()
    watcher = WatchdogWatcher(ChangeFilter(), lambda p, k: events.put((p, k)), warn=print)
    (tmp_path / "helper.py").write_text("X = 1\n")
    watcher.start()
    try:
        watcher.watch(tmp_path)
        watcher.watch(tmp_path / "sub")  # inside a recursive watch: skipped, no duplicate events
        assert len(watcher.watched) == 1
        (tmp_path / "helper.py").read_text()  # an import reads: opened + closed_no_write only
        (tmp_path / "__pycache__").mkdir()
        (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"")
        tmp = tmp_path / ".app.py.tmp"
        tmp.write_text("x = 1\n")
        os.replace(tmp, tmp_path / "app.py")
        seen = set()
        while "restart" not in {k for _, k in seen}:
            seen.add(events.get(timeout=5))
        assert (str(tmp_path / "app.py"), "restart") in seen
        assert not any("__pycache__" in p for p, _ in seen)
        assert not any(p.endswith("helper.py") for p, _ in seen)  # came before app.py's events
    finally:
        watcher.stop()
