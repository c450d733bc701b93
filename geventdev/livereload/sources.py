"""What pages are built from: the files whose change reloads open tabs (and what does not).

The monitor sends the app process every changed file that is not code (``changed``). Only some
of them make a page different: templates, static files, files a view reads. Data the app itself
writes into the project (a JSON store, ``flask_session/``, a file cache, uploads) does not, and
reloading every tab on each such write (59 reloads in 15 s, issue 16) makes a page unusable.

So the app process decides, per file, in this order:

1. under a template directory of the app (Flask's and its blueprints' ``jinja_loader`` search
   paths, any ``FileSystemLoader`` on ``jinja_env``), a template it loaded, or a static folder:
   reload (``css`` in place for stylesheets);
2. written, replaced or removed by this process since it served (seen by thin wrappers of
   ``open``/``io.open``/``os.open`` with a write flag, ``os.rename``/``os.replace`` and
   ``os.remove``/``os.unlink``): no reload, it is the app's data;
3. read by this process since it served (the same wrappers: Django's template loaders, a view
   that renders a Markdown file, static files any framework serves): reload;
4. anything else (a file no page was built from): no reload.

Stdlib only, duck-typed on Flask/Jinja (live reload is plain WSGI middleware).
"""

from __future__ import annotations

import builtins
import functools
import io
import os
import pathlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

#: Most paths remembered per kind; past it, new reads/writes are not recorded (a memory bound).
LIMIT = 50_000
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _path(value: Any) -> str | None:
    """An audit argument as an absolute path; None for a file descriptor or anything else."""
    if isinstance(value, (str, bytes, os.PathLike)):
        try:
            return os.path.abspath(os.fsdecode(value))
        except (TypeError, ValueError):
            return None
    return None


class FileUse:
    """The files this process read and wrote while serving.

    Recorded by wrappers of the functions that open, rename and remove files, not by a PEP 578
    audit hook: a Python audit hook runs for every audited event (``id()``, ``sys._getframe``,
    ``compile``...): ``id()`` went from 22 to 680 ns and ``copy.deepcopy`` (Django builds every
    form with it) 5x slower. There is one per process (``tracker()``); ``stop`` only makes it
    record nothing. ``hook`` must never raise: it runs inside the app's own ``open()``.
    """

    def __init__(self) -> None:
        self.read: set[str] = set()
        self.written: set[str] = set()
        self.active = False

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or event not in ("open", "os.rename", "os.remove"):
            return
        try:
            self.record(event, args)
        except Exception:  # noqa: BLE001 - never fail the app's open()
            pass

    def record(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path = _path(args[0])
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            writes = bool(flags & WRITE_FLAGS) or any(c in mode for c in "wax+")
            self.add(self.written if writes else self.read, [path])
        elif event == "os.rename":  # os.rename and os.replace: both names change
            self.add(self.written, [_path(args[0]), _path(args[1])])
        else:
            self.add(self.written, [_path(args[0])])

    def add(self, into: set[str], paths: Iterable[str | None]) -> None:
        for path in paths:
            if path is not None and len(into) < LIMIT:
                into.add(path)


_tracker: list[FileUse] = []


def opened(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """``open(file, mode="r", ...)`` as the audit event's ``(path, mode, flags)``."""
    file = args[0] if args else kwargs.get("file")
    mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
    return (file, mode, 0)


def os_opened(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """``os.open(path, flags, ...)`` as ``(path, None, flags)``."""
    path = args[0] if args else kwargs.get("path")
    flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
    return (path, None, flags)


def _renamed(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    return (args[0] if args else kwargs.get("src"), args[1] if len(args) > 1 else kwargs.get("dst"))


def _removed(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    return (args[0] if args else kwargs.get("path"),)


def reads(args: tuple[Any, ...]) -> bool:
    """Whether an ``open`` event's ``(path, mode, flags)`` reads the file: ``open`` with ``r``
    or ``+``, ``os.open`` without ``O_WRONLY``. A file opened only to write is output."""
    mode, flags = args[1], args[2]
    if mode is None:
        return flags & os.O_ACCMODE != os.O_WRONLY  # type: ignore[no-any-return]
    return "r" in mode or "+" in mode


Describe = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]


class Recorder(Protocol):
    """What ``wrapped`` reports to: ``FileUse``, or a standby's gate (``app.gate``)."""

    @property
    def active(self) -> bool: ...

    def hook(self, event: str, args: tuple[Any, ...]) -> None: ...


def wrapped(use: Recorder, function: Any, event: str, describe: Describe) -> Any:
    """``function``, telling ``use`` (while it is active) what each call opens, renames or
    removes, as the audit event ``event`` would; ``__wrapped__`` is the original."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if use.active:
            try:
                use.hook(event, describe(args, kwargs))
            except Exception:  # noqa: BLE001 - never fail the app's open()
                pass
        return function(*args, **kwargs)

    return wrapper


def tracker() -> FileUse:
    """This process's one ``FileUse``, its wrappers installed on first use."""
    if not _tracker:
        use = FileUse()
        opener = wrapped(use, builtins.open, "open", opened)
        builtins.open = io.open = opener  # the same function: pathlib calls io.open
        accessor = getattr(pathlib, "_NormalAccessor", None)  # Python 3.10's pathlib kept its
        if accessor is not None and hasattr(accessor, "open"):  # own reference to io.open
            accessor.open = staticmethod(opener)
        os.open = wrapped(use, os.open, "open", os_opened)
        for name in ("rename", "replace"):
            setattr(os, name, wrapped(use, getattr(os, name), "os.rename", _renamed))
        for name in ("remove", "unlink"):
            setattr(os, name, wrapped(use, getattr(os, name), "os.remove", _removed))
        _tracker.append(use)
    return _tracker[0]


def _dir(path: str) -> str:
    return os.path.join(os.path.realpath(path), "")


def template_dirs(app: Any) -> list[str]:
    """The template directories of a Flask app and its blueprints, and of a user's own
    ``FileSystemLoader`` (or loaders in a ``ChoiceLoader``/``PrefixLoader``) on ``jinja_env``."""
    loaders: list[Any] = [getattr(app, "jinja_loader", None)]
    blueprints = getattr(app, "blueprints", None)
    if isinstance(blueprints, dict):
        loaders += [getattr(bp, "jinja_loader", None) for bp in blueprints.values()]
    env = getattr(app, "jinja_env", None)
    pending = [getattr(env, "loader", None), *loaders]
    found: list[str] = []
    while pending:
        loader = pending.pop()
        if loader is None:
            continue
        pending += list(getattr(loader, "loaders", None) or ())  # ChoiceLoader
        mapping = getattr(loader, "mapping", None)
        if isinstance(mapping, dict):  # PrefixLoader
            pending += list(mapping.values())
        searchpath = getattr(loader, "searchpath", None)
        if isinstance(searchpath, (list, tuple)):
            found += [_dir(p) for p in searchpath if isinstance(p, str)]
    return found


def loaded_templates(app: Any) -> set[str]:
    """Files of the templates Jinja has compiled (its cache), whatever loader found them."""
    cache = getattr(getattr(app, "jinja_env", None), "cache", None)
    values = getattr(cache, "values", None)
    if values is None:
        return set()
    names = (getattr(t, "filename", None) for t in list(values()))
    return {os.path.realpath(n) for n in names if isinstance(n, str)}


def page_sources(
    paths: list[str], dirs: Iterable[str], templates: set[str], use: FileUse | None
) -> list[str]:
    """The changed ``paths`` a page is built from (the order in the module docstring)."""
    dirs = tuple(dirs)
    kept = []
    for path in paths:
        absolute, real = os.path.abspath(path), os.path.realpath(path)
        if real.startswith(dirs) or real in templates:
            kept.append(path)
        elif use is None:
            kept.append(path)  # nothing tracked: every change may show
        elif absolute in use.written or real in use.written:
            continue
        elif absolute in use.read or real in use.read:
            kept.append(path)
    return kept
