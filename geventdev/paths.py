"""Where code comes from: the interpreter's own trees (stdlib, site-packages) or the project.

One policy for "library vs project vs geventdev code", used by the watcher (what to watch), the
warm standby (what to import ahead), the blocking-call alarm (whose frames to show) and the
start-up diagnosis (which modules are the stdlib). Stdlib only.

The library is what ``sysconfig`` and ``site`` say it is: the ``stdlib``, ``platstdlib``,
``purelib`` and ``platlib`` paths of this interpreter and of its base install, every
``site.getsitepackages()`` directory (Debian's ``dist-packages`` included) and the user site,
plus a virtualenv's whole prefix. Never a bare string prefix of ``sys.base_prefix``: with the
OS's Python that is ``/usr``, and a project in ``/usr/src/app`` (a common Docker ``WORKDIR``)
is the user's code, to be watched and reloaded.
"""

from __future__ import annotations

import functools
import os
import site
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: geventdev's own package directory, with a trailing separator.
OWN_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "")
STDLIB_KEYS = ("stdlib", "platstdlib")
SITE_KEYS = ("purelib", "platlib")


def _dirs(paths: Iterable[str]) -> tuple[str, ...]:
    """Each directory as given and resolved, with a trailing separator (so ``/usr/lib/python3``
    never matches ``/usr/lib/python3.11-src``), most specific first, no duplicates."""
    found = set()
    for path in paths:
        if path:
            for p in (os.path.abspath(path), os.path.realpath(path)):
                found.add(os.path.join(p, ""))
    return tuple(sorted(found, key=len, reverse=True))


@dataclass(frozen=True)
class Layout:
    """The directories of an interpreter's code: ``stdlib`` and ``site`` (installed packages)."""

    stdlib: tuple[str, ...]
    site: tuple[str, ...]

    @classmethod
    def from_paths(
        cls,
        schemes: Iterable[Mapping[str, str]],
        site_dirs: Iterable[str] = (),
        venv_prefix: str | None = None,
    ) -> Layout:
        """From ``sysconfig.get_paths()``-like mappings (one per install: the venv's and the
        base's), extra site directories and a virtualenv's prefix (all of it is the venv's)."""
        schemes = list(schemes)
        stdlib = [s[k] for s in schemes for k in STDLIB_KEYS if k in s]
        packages = [s[k] for s in schemes for k in SITE_KEYS if k in s]
        return cls(_dirs(stdlib), _dirs([*packages, *site_dirs, *filter(None, [venv_prefix])]))

    @property
    def library(self) -> tuple[str, ...]:
        return self.stdlib + self.site

    def is_library(self, path: str) -> bool:
        """In the stdlib or installed packages. ``path`` is absolute (resolved by the caller when
        it may go through a symlink)."""
        return path.startswith(self.library)

    def is_stdlib(self, path: str) -> bool:
        """In the standard library proper, not in a site directory inside it (``lib/python3.X/
        site-packages`` is under the stdlib directory)."""
        return path.startswith(self.stdlib) and not path.startswith(self.site)

    def is_project(self, path: str) -> bool:
        """The user's code: neither the interpreter's trees nor geventdev itself."""
        return not path.startswith((*self.library, OWN_DIR))


def base_scheme_vars() -> dict[str, str]:
    """``sysconfig`` variables that make ``get_paths`` describe the base install (not a venv)."""
    return {
        "base": sys.base_prefix,
        "platbase": sys.base_exec_prefix,
        "installed_base": sys.base_prefix,
        "installed_platbase": sys.base_exec_prefix,
    }


@functools.cache
def layout() -> Layout:
    """This interpreter's layout (computed once per process)."""
    schemes = [sysconfig.get_paths(), sysconfig.get_paths(vars=base_scheme_vars())]
    site_dirs = list(site.getsitepackages()) + list(site.getsitepackages([sys.base_prefix]))
    user_site = site.getusersitepackages()
    if isinstance(user_site, str):
        site_dirs.append(user_site)
    venv = sys.prefix if sys.prefix != sys.base_prefix else None
    return Layout.from_paths(schemes, site_dirs, venv)


def library_dirs() -> tuple[str, ...]:
    """The interpreter's code directories, each with a trailing separator (for ``startswith``)."""
    return layout().library


#: File names an import can find (a package or namespace directory has no suffix at all).
IMPORTABLE_SUFFIXES = (".py", ".pyc", ".pyw", ".so", ".pyd")


def path_forms(path: str) -> set[str]:
    """A path as either side may name it: absolute, and with symlinks resolved."""
    return {os.path.abspath(path), os.path.realpath(path)}


def standby_stale(
    changed: Iterable[str], touched: Iterable[str], listed: Iterable[str], names: Iterable[str]
) -> bool:
    """Whether a standby that loaded part of the project (``app.gate``) must not serve after
    ``changed``: it read a changed file (``touched``), or a change adds a name an import could
    find in a directory it searched (``listed``, whose importable entries were ``names``): a
    module or package created or renamed there after the search found it missing. It keeps no
    state (the file system is asked only to resolve symlinks): the monitor decides with it
    before activating, the standby again when activated."""
    touched, listed, names = set(touched), set(listed), set(names)
    for path in changed:
        if path_forms(path) & touched:
            return True
        current = os.path.abspath(path)
        leaf = True
        while True:
            parent = os.path.dirname(current)
            if parent == current:
                break
            findable = not leaf or current.endswith(IMPORTABLE_SUFFIXES)
            if parent in listed and findable and current not in names:
                return True
            current, leaf = parent, False
    return False
