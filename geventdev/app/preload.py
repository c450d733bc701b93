"""The warm standby's head start: import what every app process imports anyway, ahead of time.

A cold app process spends ~0.5 s importing gevent, Flask, Werkzeug, Jinja and the app's
libraries before it imports a line of the project. A standby process does that work while the
current app serves: here, by name, only modules from the interpreter's own trees (stdlib,
site-packages); the project, and code installed in editable mode elsewhere, are loaded next
by ``app.gate``, through the app's real load, up to the files edited last.
Runs in the child, after gevent has patched.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable

from geventdev.paths import OWN_DIR

#: Imported ahead even on the very first standby, before any app has told us what it uses.
BASELINE = (
    "flask",
    "flask.cli",
    "flask.json.provider",
    "jinja2",
    "werkzeug",
    "werkzeug.debug",
    "werkzeug.debug.tbtools",
    "werkzeug.routing",
    "geventdev.app.stack",
    "geventdev.http.server",
    # What wrapping the app imports (after the module list the last app process reported):
    # the debugger's PIN counter (a multiprocessing.Value) and the blocking alarm's monitor.
    "geventdev.app.debugger",
    "multiprocessing.sharedctypes",
    "gevent._monitor",
    "gevent.util",
)
SKIP = ("__main__", "__mp_main__", "geventdev.app.main", "geventdev.app.__main__")


#: A module file's resolved path, per process: an app process forked from a standby finds the
#: libraries' paths resolved already (``realpath`` is ~0.01 ms a module: 10 ms of a restart).
_REAL: dict[str, str] = {}


def split_modules(prefixes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """One pass over the imported modules, each path resolved once (~0.03 ms a module): the names
    of those in the interpreter's trees (what a standby imports ahead), and the source files of
    the rest, geventdev's own excepted (the project and editable installs: what to watch)."""
    names, files = [], []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        real = _REAL.get(path)
        if real is None:
            real = _REAL[path] = os.path.realpath(path)
        if real.startswith(prefixes):
            if name not in SKIP:
                names.append(name)
        elif path.endswith(".py") and not real.startswith(OWN_DIR):
            files.append(os.path.abspath(path))
    return sorted(names), files


def preload(names: list[str], activated: Callable[[], bool] = lambda: False) -> None:
    """Import each module, ignoring any that fails: the app's own import will say why. Stops
    once ``activated``: the app's load then imports what it needs, and only that."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in (*BASELINE, *names):
            if name in sys.modules:
                continue
            if activated():
                return
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - a best-effort head start, never fatal
                continue
