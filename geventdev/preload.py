"""The warm standby's head start: import what every app process imports anyway, ahead of time.

A cold app process spends ~0.5 s importing gevent, Flask, Werkzeug, Jinja and the app's
libraries before it imports a line of the project. A standby process does that work while the
current app serves, then waits on the control channel; on a change it imports only the
project's code. Only modules from the interpreter's own trees (stdlib, site-packages) are
imported ahead: the project, and code installed in editable mode elsewhere, always load fresh.
Runs in the child, after gevent has patched.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

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
    "geventdev.middleware",
    "geventdev.server",
)
SKIP = ("__main__", "__mp_main__", "geventdev.child")


def interpreter_prefixes() -> tuple[str, ...]:
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return tuple(os.path.join(os.path.realpath(p), "") for p in prefixes)


def library_modules(prefixes: tuple[str, ...]) -> list[str]:
    """Names of the imported modules that live in the interpreter's trees (not the project)."""
    names = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name in SKIP or not path or not os.path.realpath(path).startswith(prefixes):
            continue
        names.append(name)
    return sorted(names)


def preload(names: list[str]) -> None:
    """Import each module, ignoring any that fails: the app's own import will say why."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in (*BASELINE, *names):
            if name in sys.modules:
                continue
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - a best-effort head start, never fatal
                continue
