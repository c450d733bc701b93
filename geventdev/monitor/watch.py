"""File watching: which changes matter (``ChangeFilter``), when a burst is over (``Debouncer``),
and the watchdog observer that feeds them (``WatchdogWatcher``).

We filter events ourselves rather than with ``PatternMatchingEventHandler``: its glob semantics
changed in watchdog 7 (``*.py`` no longer matches absolute paths), which is why werkzeug 3.1's
watchdog reloader stopped reloading. Plain ``fnmatch`` on both ``src_path`` and ``dest_path``
behaves the same on watchdog 4 to 7 (tests/test_old_watchdog.py runs 4.0 and 6.0).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from fnmatch import fnmatch
from pathlib import Path, PurePath
from typing import Any, Literal

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

from geventdev.config import ENV_FILES
from geventdev.paths import library_dirs

Kind = Literal["restart", "refresh"]
#: A Windows drive as WSL mounts it: /mnt/c, /mnt/d/projects...
WSL_DRIVE = re.compile(r"^/mnt/[a-zA-Z](/|$)")

#: Directories never worth watching: VCS, caches, virtualenvs, dependency trees.
IGNORED_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".nox",
        ".venv",
        "venv",
        ".direnv",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".idea",
        ".vscode",
        "htmlcov",
        ".eggs",
        "site-packages",
    }
)
#: Editor temp files (vim's ``4913`` probe and swap files, emacs locks, JetBrains safe write),
#: compiled files and what apps write at run time (logs, sqlite journals).
IGNORED_FILES = (
    "4913",
    "*~",
    ".*.sw?",
    ".*.sw?x",
    "*___jb_tmp___",
    "*___jb_old___",
    ".#*",
    "#*#",
    "*.py[cod]",
    "*.log",
    "*.sqlite*",
    "*.db",
    "*.db-journal",
    "*.db-wal",
    "*.db-shm",
    "*.tmp",
)
#: Files whose change restarts the app (the env files are re-read for every child).
RESTART_FILES = ("*.py", *ENV_FILES)
#: watchdog events that mean "content changed". ``opened``/``closed_no_write`` fire when a file
#: is merely imported (werkzeug #2603, #2945) and would loop; ``attrib`` is a bare ``touch``.
WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
]
WATCHED_TYPES = frozenset(e.event_type for e in WATCHED_EVENTS)  # exact; the filter: isinstance


def project_root(target: str | None, cwd: str | None = None) -> Path:
    """The directory the app is imported from: what ``flask.cli.prepare_import`` puts on
    ``sys.path``, computed the same way but without importing anything (the monitor never
    imports the app). Dotted module names and the wsgi.py/app.py default resolve to ``cwd``."""
    path = os.path.realpath(os.path.join(cwd or os.getcwd(), (target or "app.py").split(":", 1)[0]))
    stem, ext = os.path.splitext(path)
    path = stem if ext == ".py" else path
    if os.path.basename(path) == "__init__":
        path = os.path.dirname(path)
    while True:  # climb out of the package structure, as prepare_import does
        path = os.path.dirname(path)
        if not os.path.exists(os.path.join(path, "__init__.py")):
            return Path(path)


def file_id(path: str) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        return (st := os.stat(path)).st_dev, st.st_ino
    return None


def output_files() -> frozenset[tuple[int, int]]:
    """The regular files our stdout/stderr go to; app processes inherit and write to them."""
    stats = []
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            stats.append(os.fstat(fd))
    return frozenset((st.st_dev, st.st_ino) for st in stats if stat.S_ISREG(st.st_mode))


def glob_matches(path: str, pattern: str) -> bool:
    """uvicorn's ``--reload-include``/``--reload-exclude`` globs: against the file name
    (``*.toml``), the path's last parts (``config/*.yaml``, ``Path.match``), or the path
    relative to the current directory, where ``*`` also crosses ``/`` (``data/*``)."""
    if fnmatch(os.path.basename(path), pattern) or PurePath(path).match(pattern):
        return True
    return fnmatch(os.path.relpath(path), pattern) or fnmatch(path, pattern)


def polling_reason(
    reloader_type: str,
    roots: Iterable[str],
    environ: Mapping[str, str] = os.environ,
    proc_version: str | None = None,
) -> str | None:
    """Why to poll instead of using inotify (watchdog's native observer), or None.

    ``--reloader-type stat`` (or ``GEVENTDEV_RELOADER_TYPE=stat``) always polls, ``watchdog``
    never does. ``auto`` polls when ``WATCHFILES_FORCE_POLLING`` is set (watchfiles' variable,
    which Docker set-ups already export) and for a project on a Windows drive under WSL
    (``/mnt/c/...``, with "microsoft" in ``/proc/version``): inotify there never sees changes
    made by Windows editors (microsoft/WSL#4739), the case watchfiles polls for automatically.
    """
    if reloader_type == "stat":
        return "--reloader-type stat"
    if reloader_type == "watchdog":
        return None
    force = environ.get("WATCHFILES_FORCE_POLLING", "").strip().lower()
    if force and force not in ("0", "false", "no", "off"):
        return "WATCHFILES_FORCE_POLLING is set"
    if proc_version is None:
        try:
            proc_version = Path("/proc/version").read_text()
        except OSError:
            proc_version = ""
    if "microsoft" in proc_version.lower():
        for root in roots:
            if WSL_DRIVE.match(root):
                return f"{root} is a Windows drive under WSL, where inotify misses changes"
    return None


class ChangeFilter:
    """Decide what a changed path means: ``restart``, ``refresh`` (templates, static) or nothing.

    ``extra_files`` may name directories: any file under one restarts the app. ``include`` globs
    restart too (a ``settings.toml`` read at import), ``exclude`` globs are ignored.
    """

    def __init__(
        self,
        extra_files: Iterable[str] = (),
        exclude_patterns: Iterable[str] = (),
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
    ):
        paths = [os.path.abspath(f) for f in extra_files]
        self.extra_dirs = tuple(p for p in paths if os.path.isdir(p))
        self.extra_files = frozenset(p for p in paths if p not in self.extra_dirs)
        self.exclude_patterns = tuple(exclude_patterns)
        self.include, self.exclude = tuple(include), tuple(exclude)
        self.ignored_prefixes = library_dirs()  # geventdev.paths: the one policy
        self.own_output = output_files()

    def __repr__(self) -> str:
        extra, excludes = sorted(self.extra_files), self.exclude_patterns
        return (
            f"ChangeFilter(extra_files={extra}, extra_dirs={list(self.extra_dirs)}, "
            f"exclude_patterns={excludes}, include={self.include}, exclude={self.exclude})"
        )

    def classify(self, path: str) -> Kind | None:
        path = os.path.abspath(path)
        if path in self.extra_files:
            return "restart"
        name = os.path.basename(path)
        parts = Path(path).parts[:-1]
        if any(p in IGNORED_DIRS for p in parts) or path.startswith(self.ignored_prefixes):
            return None
        if any(fnmatch(name, p) for p in IGNORED_FILES):
            return None
        if any(fnmatch(path, p) or fnmatch(name, p) for p in self.exclude_patterns):
            return None
        if any(glob_matches(path, p) for p in self.exclude):
            return None
        if self.own_output and file_id(path) in self.own_output:
            return None  # `geventdev app.py > out.txt`: every access-log line is a write
        if any(fnmatch(name, p) for p in RESTART_FILES):
            return "restart"
        if any(path.startswith(d + os.sep) for d in self.extra_dirs):
            return "restart"
        if any(glob_matches(path, p) for p in self.include):
            return "restart"
        return "refresh"

    def event_paths(self, event: FileSystemEvent) -> list[str]:
        """The file paths an event touches (a move is both its source and its destination)."""
        if event.is_directory or event.event_type not in WATCHED_TYPES:
            return []
        paths = [os.fsdecode(event.src_path)]
        if event.event_type == "moved" and event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        return paths


class Debouncer:
    """Trailing-edge debounce: a batch is due after a quiet spell with no new path, however long
    the burst before it (a ``git checkout``, a code generator writing 20,000 files): one burst
    is one restart. The quiet spell is ``quiet`` seconds, and grows with the burst (a quarter of
    its length, up to ``max_quiet``): a burst that has run for seconds is paused by a loaded
    machine's scheduler for longer than a keystroke burst is. Driven by the caller's clock.

    ``cap`` bounds the wait from a batch's first path: a file written without pause (a heartbeat,
    a build tool's output in the tree) must not hold a save's restart back forever."""

    def __init__(self, quiet: float, max_quiet: float = 0.5, cap: float = 10.0) -> None:
        self.quiet, self.max_quiet, self.cap = quiet, max(quiet, max_quiet), cap
        self.pending: dict[str, Kind] = {}
        self.first = self.last = 0.0

    def add(self, path: str, kind: Kind, now: float) -> None:
        if not self.pending:
            self.first = now
        self.last = now
        if self.pending.get(path) != "restart":
            self.pending[path] = kind

    def deadline(self) -> float | None:
        if not self.pending:
            return None
        spell = max(self.quiet, min(self.max_quiet, (self.last - self.first) / 4))
        return min(self.last + spell, self.first + self.cap)

    def pop_due(self, now: float) -> dict[str, Kind]:
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return {}
        batch, self.pending = self.pending, {}
        return batch


def pruned_scandir(path: str | None) -> Iterator[os.DirEntry[str]]:
    """``os.scandir`` without the ignored directories, so polling never walks node_modules."""
    with os.scandir(path) as entries:
        yield from (e for e in entries if not (e.name in IGNORED_DIRS and e.is_dir()))


def polling_observer() -> BaseObserver:
    """A stat-polling observer (Docker volumes, network mounts, no inotify left) that skips the
    ignored trees: with 20,000 files in node_modules, 0.1 % of a core instead of ~35 %."""
    # watchdog < 7 annotates polling_interval as int (it waits on it as a float, so 0.5 works);
    # passed untyped so mypy --strict holds with watchdog 4-7 (6 is what Python 3.10 gets).
    options: dict[str, Any] = {"polling_interval": 0.5}
    return PollingObserverVFS(os.stat, pruned_scandir, **options)


class _Handler(FileSystemEventHandler):
    def __init__(self, changes: ChangeFilter, emit: Callable[[str, Kind], None]) -> None:
        self.changes, self.emit = changes, emit

    def dispatch(self, event: FileSystemEvent) -> None:
        for path in self.changes.event_paths(event):
            kind = self.changes.classify(path)
            if kind is not None:
                self.emit(path, kind)


class WatchdogWatcher:
    """Watch directory trees with watchdog and call ``emit(path, kind)`` from its thread.

    A root that inotify cannot watch (``fs.inotify.max_user_watches`` exhausted) falls back to
    polling, with a warning: never a silent downgrade (pyramid #2920).
    """

    def __init__(
        self,
        changes: ChangeFilter,
        emit: Callable[[str, Kind], None],
        warn: Callable[[str], None],
        polling: bool = False,
    ) -> None:
        self.handler = _Handler(changes, emit)
        self.warn = warn
        self.fallback: BaseObserver | None = None
        try:
            self.observer: BaseObserver = polling_observer() if polling else Observer()
        except OSError as exc:  # watchdog 7 opens its inotify instance right here
            self.observer = self._polling_fallback(exc, "the project")
        self.watched: set[tuple[str, bool]] = set()

    def start(self) -> None:
        self.observer.start()

    def watch(self, directory: Path, recursive: bool = True) -> bool:
        """Watch a directory once (main thread only); one inside a recursive watch is skipped.
        True if it is watched now and was not before."""
        key = (str(directory), recursive)
        if key in self.watched or self.covers(directory) or not directory.is_dir():
            return False
        try:
            self._schedule(self.observer, directory, recursive)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EMFILE):  # removed meanwhile, unreadable
                self.warn(f"cannot watch {directory}: {exc.strerror or exc}")
                return False
            if self.fallback is None:
                self.fallback = self._polling_fallback(exc, str(directory))
                self.fallback.start()
            self._schedule(self.fallback, directory, recursive)
        self.watched.add(key)
        return True

    def _polling_fallback(self, exc: OSError, what: str) -> BaseObserver:
        """Out of inotify instances or watches: say which limit to raise, then poll."""
        if exc.errno not in (errno.ENOSPC, errno.EMFILE):
            raise exc
        limit = "max_user_watches" if exc.errno == errno.ENOSPC else "max_user_instances"
        self.warn(
            f"inotify limit reached watching {what} (raise fs.inotify.{limit} with sysctl);"
            " polling instead."
        )
        return polling_observer()

    def covers(self, directory: Path) -> bool:
        return any(r and directory.is_relative_to(d) for d, r in self.watched)

    def _schedule(self, observer: BaseObserver, directory: Path, recursive: bool) -> None:
        observer.schedule(
            self.handler, str(directory), recursive=recursive, event_filter=WATCHED_EVENTS
        )

    def stop(self) -> None:
        for observer in (self.observer, self.fallback):
            if observer is not None and observer.is_alive():
                observer.stop()
                observer.join(timeout=2)
