"""The monitor and the terminal: "rs" typed while no app process runs, and echo restored.

While an app process is alive, that process reads the terminal (see ``app.main``): a
``breakpoint()`` there must get every line.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
from collections.abc import Callable

from geventdev.protocol import is_restart_command

POLL = 0.2


def ensure_echo_on() -> None:
    """Turn terminal echo back on: a child killed inside pdb leaves it off (werkzeug #1317)."""
    try:
        import termios
    except ImportError:  # pragma: no cover - Windows
        return
    if not sys.stdin or not sys.stdin.isatty():
        return
    # A background process group writing terminal attributes gets SIGTTOU (Django ignores it too).
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        attrs = termios.tcgetattr(sys.stdin)
        if not attrs[3] & termios.ECHO:
            attrs[3] |= termios.ECHO
            termios.tcsetattr(sys.stdin, termios.TCSANOW, attrs)
    except (termios.error, OSError, ValueError):
        pass
    finally:
        signal.signal(signal.SIGTTOU, previous)


class StdinCommands:
    """Reads "rs" from a terminal, only while no app process is alive (so never from under a
    ``breakpoint()``: while an app process runs, that process reads the terminal itself)."""

    def __init__(self, on_restart: Callable[[], None]) -> None:
        self.on_restart = on_restart
        self.active = threading.Event()
        if sys.stdin is not None and sys.stdin.isatty():
            threading.Thread(target=self._run, name="geventdev-stdin", daemon=True).start()

    def _run(self) -> None:
        while True:
            self.active.wait()
            try:
                readable, _, _ = select.select([sys.stdin], [], [], POLL)
                if readable and self.active.is_set():
                    if is_restart_command(os.read(sys.stdin.fileno(), 1024)):
                        self.on_restart()
            except (OSError, ValueError):
                return
