"""Start-up warnings for the classic gevent traps, each with its fix.

- Modules imported before ``monkey.patch_all()`` that kept a reference to an unpatched object
  (gevent's ``MonkeyPatchWarning`` finds this for ``ssl.SSLContext`` only; we look for every
  object gevent replaced). In the geventdev child the patch is the first statement, so the
  culprit is something that runs at interpreter start: ``sitecustomize``, a ``.pth`` file,
  ``PYTHONSTARTUP`` or a debugger's bootstrap. Under gunicorn, ``--preload`` does the same.
- ``psycopg2`` without psycogreen: a C driver gevent cannot patch; every query blocks the hub.
- A pydevd-based debugger (VS Code/debugpy, PyCharm) without ``GEVENT_SUPPORT=True``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from geventdev.paths import layout
from geventdev.protocol import DEBUGGER_MODULES

_SKIP_PREFIXES = ("gevent", "greenlet", "geventdev", "_pydev", "pydevd", "debugpy", "zope")


def _is_library_module(module: ModuleType) -> bool:
    path = getattr(module, "__file__", None)
    if not path:
        return True
    return layout().is_stdlib(os.path.realpath(path))


def imported_before_gevent() -> list[tuple[str, ModuleType]]:
    """Modules imported before gevent was: ``sys.modules`` keeps insertion order, and patching
    is what imports gevent first. (A module that takes an original later, on purpose, with
    ``monkey.get_original``, comes after it.)"""
    modules = list(sys.modules.items())
    names = [name for name, _ in modules]
    return modules[: names.index("gevent")] if "gevent" in names else modules


def unpatched_references() -> dict[str, list[str]]:
    """Modules imported before patching (not stdlib, not gevent) that hold an object gevent has
    since replaced."""
    from gevent import monkey

    originals: dict[int, str] = {}
    for module_name in list(monkey.saved):
        items = monkey.saved.get(module_name)
        if not isinstance(items, dict):
            continue
        for attr, obj in items.items():
            if callable(obj) and getattr(sys.modules.get(module_name), attr, obj) is not obj:
                originals[id(obj)] = f"{module_name}.{attr}"
    found: dict[str, list[str]] = {}
    seen: set[int] = set()
    for name, module in imported_before_gevent():
        spec = getattr(module, "__spec__", None)
        real_name = getattr(spec, "name", None) or name  # the child runs as __main__
        if module is None or id(module) in seen or real_name.startswith(_SKIP_PREFIXES):
            continue
        seen.add(id(module))  # requests.packages.urllib3 is urllib3 under a second name
        if _is_library_module(module):
            continue
        held = {originals[id(v)] for v in list(vars(module).values()) if id(v) in originals}
        if held:
            found[getattr(module, "__name__", name)] = sorted(held)
    return found


def psycopg2_unpatched(modules: Mapping[str, Any] = sys.modules) -> bool:
    """psycopg2 is imported and has no wait callback (psycogreen sets one)."""
    if "psycopg2" not in modules:
        return False
    extensions = modules.get("psycopg2.extensions")
    get_callback = getattr(extensions, "get_wait_callback", None)
    return get_callback is None or get_callback() is None


def startup_warnings(environ: Mapping[str, str] = os.environ) -> list[str]:
    """One line per trap found, each saying what to do."""
    lines = []
    refs = unpatched_references()
    if refs:
        shown = "; ".join(f"{mod} ({', '.join(objs)})" for mod, objs in sorted(refs.items()))
        lines.append(
            " * Warning: imported before gevent patched, these keep unpatched objects"
            " (MonkeyPatchWarning):"
            f" {shown}. Something imports them at interpreter start (sitecustomize, a .pth"
            " file, PYTHONSTARTUP); import them after patching instead (under gunicorn: drop"
            " --preload)."
        )
    if psycopg2_unpatched():
        lines.append(
            " * Warning: psycopg2 is imported without psycogreen, so every query blocks all"
            " requests. Fix: pip install psycogreen, then call"
            " psycogreen.gevent.patch_psycopg() once before connecting (or use psycopg 3)."
        )
    if any(m in sys.modules for m in DEBUGGER_MODULES) and environ.get("GEVENT_SUPPORT") != "True":
        lines.append(
            " * Warning: a debugger is attached without GEVENT_SUPPORT=True, so breakpoints in"
            ' requests may be missed. VS Code: "gevent": true in launch.json; PyCharm: enable'
            " Gevent compatible (Settings > Python Debugger)."
        )
    return lines
