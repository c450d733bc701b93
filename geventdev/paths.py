"""Where code comes from: the interpreter's own trees (stdlib, site-packages) or elsewhere.

One policy for "library vs project vs geventdev code", used by the watcher (what to watch), the
warm standby (what to import ahead) and the blocking-call alarm (whose frames to show).
Stdlib only.
"""

from __future__ import annotations

import os
import sys

#: geventdev's own package directory, with a trailing separator.
OWN_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "")


def interpreter_prefixes() -> tuple[str, ...]:
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return tuple(os.path.join(os.path.realpath(p), "") for p in prefixes)
