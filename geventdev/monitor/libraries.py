"""The library modules an app imported, kept between runs: the first standby's head start.

A standby imports ahead, by name, the library modules the newest app process imported
(``app.preload``), so a restart imports only the project. The first standby of a run starts
before any app has said which: it imported Flask's alone, and the first save imported every
other library again (pgAdmin 4: 1.5 s, against 0.45 s for the saves after it), while the app,
forked from that small standby, shared nothing with the next one. So the list the app reported
is kept in the user's cache directory, one small file per interpreter, project and app target,
and handed to the next run's first standby: from the second run on, the first save is as fast
as the ones after it, and app and standby share the libraries' pages from the start.

A hint, never a requirement: the standby skips a module that no longer imports (as any
preload failure), and a missing, unreadable or unwritable file is just no list. The monitor
never imports what the list names.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def cache_file(project: Path, app: str | None, environ: Mapping[str, str]) -> Path | None:
    """Where the list for this interpreter, project and app target is kept: under
    ``$XDG_CACHE_HOME`` (``~/.cache``), as pip and pre-commit keep theirs. None without a
    usable home (a relative ``XDG_CACHE_HOME`` is to be ignored, says the XDG spec)."""
    base = environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    key = "\0".join((sys.prefix, sys.version, str(project), app or ""))
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return Path(base) / "geventdev" / "libraries" / f"{name}.json"


def load(path: Path | None) -> tuple[str, ...]:
    """The module names kept at ``path``, or none."""
    if path is None:
        return ()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ()
    names = data.get("modules") if isinstance(data, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return ()
    return tuple(names)


def save(path: Path | None, names: Sequence[str]) -> None:
    """Keep ``names`` at ``path``: written whole, then renamed (a run starting meanwhile reads
    the old list or the new one, never half of one)."""
    if path is None:
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"modules": list(names)}), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
