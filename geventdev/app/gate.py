"""The standby's second head start: load the project too, up to the file you are editing.

A standby (``app.preload``) imports the libraries, then waits. This one goes on: it runs the
app's real load (``load_app``, the very steps a cold app process runs) and stops just before it
would first touch a *hot* file, one of the files changed most recently (the monitor passes them),
or at the end of the load. Frozen there, it is a cold start paused at a point that depends on no
changed file yet: everything it ran so far read only files that are still as they were, so on
``load`` (with every path changed since it started) a fork of it (``app.zygote``) resumes from
disk and ends exactly where a cold start would, while the standby stays paused for the next one.
A 400-module project whose middle module is edited again imports ~200 modules instead of 400;
editing the same view over and over, the restart costs that module, its importers, and the app
factory.

What it touched is recorded so that nothing stale is ever served:

- every module it imported: a finder first on ``sys.meta_path`` asks the others in turn (so the
  search is the one the import system does) and notes each spec's file;
- every file it opened (``open``/``io.open``/``os.open``, wrapped only until it resumes);
- the importable names in each project directory it searched, listed *before* the search: a
  module created later (``try: import local_settings``) must not be found missing.

The monitor activates it only if no changed path is among these (``monitor.plan``); on ``load``
the standby checks again, and answers ``stale`` (then retires) if a change it had not yet heard
of hit it. While frozen it runs nothing: it waits in a real (unpatched) ``select`` on the control
channel, so a scheduler or greenlet the project started at import does not run in the standby
(it does in each app process forked from it, as in a cold start); Ctrl+C and SIGTERM retire it
there (``app.main`` gives a standby plain signal handlers: gevent's run only in its loop). What
the project prints while loading is held, and written by each app process as it resumes, as a
cold start would print it; a discarded standby printed nothing.
"""

from __future__ import annotations

import _io
import builtins
import contextlib
import importlib.util
import io
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, TextIO

from geventdev.app.zygote import Zygote
from geventdev.livereload.sources import opened, os_opened, reads, wrapped
from geventdev.paths import IMPORTABLE_SUFFIXES, path_forms, standby_stale

PYCACHE = f"{os.sep}__pycache__{os.sep}"


def importable(directory: str, name: str) -> bool:
    """Whether a directory entry could be found by an import (a module file or a package)."""
    return name.endswith(IMPORTABLE_SUFFIXES) or (
        "." not in name and os.path.isdir(os.path.join(directory, name))
    )


class HeldStream:
    """``sys.stdout``/``sys.stderr`` while the standby loads: text is kept, then written on
    release (or dropped). Whoever kept a reference (a logging handler made at import) writes
    straight through afterwards."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.holding = stream, True
        self.held: list[str] = []

    def write(self, text: str) -> int:
        if self.holding:
            self.held.append(text)
            return len(text)
        return self.stream.write(text)

    def flush(self) -> None:
        if not self.holding:
            self.stream.flush()

    def release(self) -> None:
        self.holding = False
        for text in self.held:
            self.stream.write(text)
        self.stream.flush()
        self.held = []

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer...
        return getattr(self.stream, name)


class Gate:
    """Pauses the load of a standby before its first touch of a hot file (see the module doc).

    ``library``: path prefixes of the interpreter's trees; files there are not the project's.
    ``hot``: the files changed most recently. Without hot files, it pauses before the first
    project module (the libraries alone are imported ahead, as before). ``zygote``: the
    control channel and the forks; ``armed``: report (paused, with ``report()``).
    """

    def __init__(
        self,
        zygote: Zygote,
        hot: Iterable[str],
        library: tuple[str, ...],
        armed: Callable[[dict[str, Any]], None],
    ) -> None:
        self.zygote, self.library, self.armed = zygote, library, armed
        self.hot = {form for path in hot for form in path_forms(path)}
        self.touched: set[str] = set()
        self.listed: dict[str, set[str]] = {}
        self.seen: set[str] = set()  # directories looked at (listed, or not the project's)
        self.go: list[str] | None = None  # the changed paths the "load" being served brought
        self.reported = False  # the "standby" report is sent once, at the pause
        self.at = ""  # the file it paused before ("": at the end of the load)
        self.released_at: float | None = None  # set in the app process only
        self.released_ns = 0  # wall clock of the fork: files read ahead were unchanged then
        self.streams: list[HeldStream] = []
        self._originals: dict[str, Any] = {}

    # -- recording ------------------------------------------------------------------------
    def project(self, path: str) -> bool:
        return not os.path.realpath(path).startswith(self.library)

    def touch(self, path: str) -> None:
        if self.project(path):
            self.touched |= path_forms(path)

    def list_dirs(self, dirs: Iterable[str]) -> None:
        """Note the importable entries of each project directory not listed yet."""
        for directory in dirs:
            if not isinstance(directory, str):
                continue
            if directory in self.seen:
                continue
            self.seen.add(directory)
            key = os.path.abspath(directory or ".")
            if key in self.listed or not self.project(key):
                continue
            try:
                names = {n for n in os.listdir(key) if importable(key, n)}
            except OSError:
                names = set()
            self.listed[key] = {os.path.join(key, n) for n in names}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """The import system's own search (the finders after us, in order), recorded; before
        a hot project file, the pause. ``None`` once resumed: the other finders search anew."""
        if self.checkpoint():  # the app process: the other finders search anew
            return None
        self.list_dirs(path if path is not None else sys.path)
        spec = self._find(fullname, path, target)
        origin = getattr(spec, "origin", None) if spec is not None else None
        if not origin or not os.path.isfile(origin) or not self.project(origin):
            return spec
        if not self.hot or path_forms(origin) & self.hot:
            self.at = origin
            self.pause()  # before its first read: after "load", it is read from disk
            return None
        self.touch(origin)
        return spec

    def _find(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None
    ) -> ModuleSpec | None:
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: ModuleSpec | None = find(fullname, path, target)
            if spec is not None:
                return spec
        return None

    @property
    def active(self) -> bool:
        """Recording what the load reads (``sources.wrapped`` asks): until it resumes."""
        return self.released_at is None

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        """A file opened while loading ahead: one it reads is something the load depends on (a
        file only written is output). ``open_code`` is importlib reading a module: a cached
        ``.pyc`` stands for the source it was compiled from."""
        file = args[0]
        if event == "open_code" and isinstance(file, str) and PYCACHE in file:
            with contextlib.suppress(ValueError):  # not a name the cache would give: as is
                file = importlib.util.source_from_cache(file)
        if reads(args) and isinstance(file, (str, bytes, os.PathLike)):
            self.touch(os.fsdecode(file))

    # -- the pause ------------------------------------------------------------------------
    def start(self, preloaded: Iterable[str]) -> None:
        """Begin recording (before the project's first line runs); not in an app process
        forked while the libraries were still being imported ahead."""
        if self.released_at is not None:
            return
        for path in preloaded:
            self.touch(path)
        self.list_dirs(os.path.dirname(path) for path in self.hot)
        sys.meta_path.insert(0, self)
        self._originals = {"open": builtins.open, "os.open": os.open, "open_code": _io.open_code}
        builtins.open = io.open = wrapped(self, builtins.open, "open", opened)
        os.open = wrapped(self, os.open, "open", os_opened)
        # How importlib reads a module (also one loaded by path: spec_from_file_location).
        _io.open_code = io.open_code = wrapped(self, _io.open_code, "open_code", _code_opened)
        self.streams = [HeldStream(sys.stdout), HeldStream(sys.stderr)]
        sys.stdout, sys.stderr = self.streams

    def report(self) -> dict[str, Any]:
        """What the ``standby`` message carries: touched files, listed dirs and their names,
        and the file it paused before (``at``)."""
        names = sorted({n for listed in self.listed.values() for n in listed})
        touched, listed = sorted(self.touched), sorted(self.listed)
        return {"paths": touched, "listed": listed, "names": names, "at": self.at}

    def pause(self) -> None:
        """Frozen until a ``load`` makes an app process of a fork of us (it returns, in the
        app process); here the standby waits again for the next one (or a stop)."""
        if not self.reported:
            self.reported = True
            self.armed(self.report())
        while not self.checkpoint(block=True):
            pass

    def finish(self) -> None:
        """The end of the load: pause there if no hot file came first; stop recording."""
        if self.released_at is None:
            self.pause()
        if self in sys.meta_path:  # not from inside find_spec: the import system iterates
            sys.meta_path.remove(self)

    def activated(self) -> bool:
        """Whether this is an app process now (``checkpoint``); between modules imported ahead."""
        return self.checkpoint()

    def checkpoint(self, block: bool = False) -> bool:
        """Take the messages waiting (with ``block``, wait for one) and serve a ``load``: refuse
        it if a changed path hits what we read (``stale``: the standby retires), else fork.
        True in the app process (it stops recording), False in the standby, which goes on."""
        if self.released_at is not None:
            return True
        self.zygote.poll(block and self.zygote.load is None)  # one taken early may wait here
        load = self.zygote.load
        if load is None or (load.wait and not block):  # a cold start forks at the pause
            return False
        self.go = load.paths
        if self.stale():
            self.zygote.refuse(load)
        if self.zygote.fork(load):
            self.resume()
            return True
        self.go = None
        return False

    def stale(self) -> bool:
        """Whether a changed path is one this standby touched (or would now find)."""
        report = self.report()
        return standby_stale(self.go or [], report["paths"], report["listed"], report["names"])

    def resume(self) -> None:
        """Stop recording; the held output is written now, as a cold start would write it."""
        if self.released_at is not None:
            return
        self.released_at, self.released_ns = time.perf_counter(), time.time_ns()
        if not self._originals:  # forked while the libraries were imported: not recording yet
            return
        if getattr(builtins.open, "__wrapped__", None) is self._originals.get("open"):
            builtins.open = io.open = self._originals["open"]
        if getattr(os.open, "__wrapped__", None) is self._originals.get("os.open"):
            os.open = self._originals["os.open"]
        if getattr(_io.open_code, "__wrapped__", None) is self._originals.get("open_code"):
            _io.open_code = io.open_code = self._originals["open_code"]
        for name, stream in zip(("stdout", "stderr"), self.streams, strict=True):
            if getattr(sys, name) is stream:
                setattr(sys, name, stream.stream)
            stream.release()


def _code_opened(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """``io.open_code(path)`` as an ``open`` event's ``(path, mode, flags)``: it reads."""
    return (args[0] if args else kwargs.get("path"), "rb", 0)
