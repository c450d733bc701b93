"""Never cache bytecode that a save in the same second could make stale.

Python trusts a ``.pyc`` when the source's mtime, in *whole seconds*, and size match the ones
recorded in it. A restart takes ~0.1 s, so fixing a typo (``1`` -> ``2``) and saving again in
the same second leaves a file of the same size and the same second as the one just compiled:
the import loads the previous save's bytecode (https://github.com/python/cpython/issues/75953).
Git met the same problem with its index and solved it by never trusting an entry stamped in the
second it was written ("racy git"). We do the same on the writing side: the app process's
source loader writes a ``.pyc`` only for a source whose mtime's second had already ended (minus
a margin for the file system's coarse clock) when the source was stat'ed. Any later save is
then stamped in a later second, so a cached ``.pyc`` can never be mistaken for it. Older
sources (all but what was just edited) are cached as usual.

Public importlib API only: a ``FileFinder`` path hook with a ``SourceFileLoader`` subclass.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

#: How far a file system's timestamp may lag ``time.time()``: Linux stamps files with a coarse
#: clock (up to a jiffy behind), network and container file systems with another machine's clock.
CLOCK_MARGIN = 1.0


def is_racy(source_mtime: float, stat_time: float, margin: float = CLOCK_MARGIN) -> bool:
    """Whether a save after ``stat_time`` could still be stamped in ``source_mtime``'s second."""
    return int(source_mtime) + 1 > stat_time - margin


class ExactSourceLoader(importlib.machinery.SourceFileLoader):
    """``SourceFileLoader`` that skips writing a racy ``.pyc`` (reading is unchanged).

    ``SourceLoader.get_code`` calls ``path_stats`` on the source before reading it and
    ``set_data`` for the bytecode after compiling it, under the module's import lock.
    """

    racy = False

    def path_stats(self, path: str) -> Mapping[str, Any]:
        stat_time = time.time()  # before the read: any later save is stamped after this
        stats = super().path_stats(path)
        self.racy = is_racy(stats["mtime"], stat_time)
        return stats

    def set_data(self, path: str, data: Buffer, *, _mode: int = 0o666) -> None:
        if self.racy and path.endswith(tuple(importlib.machinery.BYTECODE_SUFFIXES)):
            return
        super().set_data(path, data, _mode=_mode)


def install() -> None:
    """Use ``ExactSourceLoader`` for every ``sys.path`` directory from now on.

    Replaces the default ``FileFinder`` hook (same loaders otherwise) and drops the finders it
    already cached, so modules imported from now on go through it.
    """
    hook = importlib.machinery.FileFinder.path_hook(
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        (ExactSourceLoader, importlib.machinery.SOURCE_SUFFIXES),
        (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
    )
    for i, existing in enumerate(sys.path_hooks):
        if getattr(existing, "__name__", "") == "path_hook_for_FileFinder":
            sys.path_hooks[i] = hook
            break
    else:
        sys.path_hooks.append(hook)
    for key, finder in list(sys.path_importer_cache.items()):
        if isinstance(finder, importlib.machinery.FileFinder):
            del sys.path_importer_cache[key]
    importlib.invalidate_caches()
