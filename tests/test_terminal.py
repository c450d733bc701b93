"""The terminal: pdb in a route, "rs" to restart, echo restored; inotify limits."""

from __future__ import annotations

import ctypes
import errno
import os
import pty
import queue
import signal
import termios
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import HELLO_APP, wait_until, write

from geventdev.monitor.watch import ChangeFilter, WatchdogWatcher

DEBUG_APP = (
    HELLO_APP
    + """
@app.route("/debug")
def debug():
    answer = 6 * 7
    breakpoint()
    return f"after pdb {answer}"
"""
)


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    """A pseudo-terminal: (master, slave). The server gets the slave as its stdin."""
    master, slave = pty.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def test_breakpoint_in_a_route_gets_the_terminal_and_rs_restarts(
    project: Path, dev_server, terminal: tuple[int, int]
) -> None:
    master, slave = terminal
    write(project / "app.py", DEBUG_APP)
    server = dev_server("app.py", stdin=slave)
    server.get("/")
    pending = ThreadPoolExecutor(1).submit(server.get, "/debug")
    server.wait_for_log("(Pdb) ")
    os.write(master, b"p answer + 1\n")  # pdb, not geventdev's "rs" reader, gets this line
    server.wait_for_log("43")
    os.write(master, b"c\n")
    assert pending.result(timeout=10).text == "after pdb 42"
    os.write(master, b"rs\n")
    server.wait_for_log(" * Restart requested ('rs'), restarting")
    server.wait_for_log(" * Restarted in ")
    assert server.get("/").text == "hello v1"


def test_rs_brings_a_dead_app_back(project: Path, dev_server, terminal: tuple[int, int]) -> None:
    master, slave = terminal
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py", stdin=slave)
    server.get("/")
    os.kill(server.child(), signal.SIGKILL)
    server.wait_for_log("waiting for a change")
    os.write(master, b"rs\n")  # now the monitor itself reads the terminal
    server.wait_for_text("/", "hello v1")


def test_terminal_echo_is_restored_after_a_child_exits(
    project: Path, dev_server, terminal: tuple[int, int]
) -> None:
    master, slave = terminal
    write(project / "app.py", HELLO_APP)
    server = dev_server("app.py", stdin=slave)
    server.get("/")
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO  # what a child killed inside pdb/getpass leaves behind
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    os.kill(server.child(), signal.SIGKILL)
    server.wait_for_log("waiting for a change")
    wait_until(lambda: termios.tcgetattr(slave)[3] & termios.ECHO, 5, "echo to be back on")


@pytest.mark.e2e
def test_inotify_exhausted_falls_back_to_polling_with_a_warning(tmp_path: Path) -> None:
    """Use up this user's inotify instances for real, then watch: polling, and a warning."""
    libc = ctypes.CDLL(None, use_errno=True)
    held: list[int] = []
    warnings: list[str] = []
    events: queue.Queue[str] = queue.Queue()
    watcher = None
    try:
        while (fd := libc.inotify_init1(os.O_CLOEXEC)) >= 0 and len(held) < 100_000:
            held.append(fd)
        assert ctypes.get_errno() == errno.EMFILE
        watcher = WatchdogWatcher(ChangeFilter(), lambda p, k: events.put(p), warn=warnings.append)
        watcher.start()
        watcher.watch(tmp_path)
        for fd in held:  # give them back at once: other processes need inotify too
            os.close(fd)
        held.clear()
        assert len(warnings) == 1 and "fs.inotify.max_user_instances" in warnings[0]
        write(tmp_path / "app.py", "x = 1\n")
        assert events.get(timeout=5) == str(tmp_path / "app.py")
    finally:
        for fd in held:
            os.close(fd)
        if watcher is not None:
            watcher.stop()
