"""The monitor and the terminal: "rs" typed while no app process runs, and echo restored.

While an app process is alive, that process reads the terminal (see ``app.main``): a
``breakpoint()`` there must get every line.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import threading
import time
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
        # SIGTTIN blocked in this thread: a read from the background process group (Ctrl+Z,
        # `bg`) then fails with EIO instead of stopping the whole server (issue 12).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTIN})
        while True:
            self.active.wait()
            try:
                if not foreground(sys.stdin.fileno()):  # the shell owns the terminal
                    time.sleep(POLL)
                    continue
                readable, _, _ = select.select([sys.stdin], [], [], POLL)
                if readable and self.active.is_set():
                    data = os.read(sys.stdin.fileno(), 1024)
                    if is_restart_command(data):
                        self.on_restart()
                    elif not data:  # a hung-up terminal stays readable: don't spin
                        time.sleep(POLL)
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # moved to the background between check and read
                    time.sleep(POLL)
                    continue
                return
            except ValueError:
                return


def foreground(fd: int) -> bool:
    """Whether this process group owns the terminal on ``fd`` (the foreground job). A terminal
    that is not our controlling one (ENOTTY) has no job control: reading it is safe."""
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return True
