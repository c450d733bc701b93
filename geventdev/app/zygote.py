"""The standby as the parent of the app processes: it forks each one from where its load stopped.

A standby (``app.preload``, ``app.gate``) is a cold start paused at a point that depends on no
changed file. When the monitor activates it (``load``), it does not become the app itself: it
forks, and the *child* goes on loading and serves, while the standby stays paused, ready for the
next change. So the app process shares with the standby every page loaded before the fork (the
libraries and the project up to the edited file: about half the memory of a second interpreter),
no restart imports the libraries again, and a second save right after a first finds the standby
ready (no cold window).

The monitor passes each app its own control channel with the ``load`` message (``SCM_RIGHTS``),
so an app process talks to the monitor exactly as one the monitor started; the standby reports
each fork (``forked``: gen, pid) and, being the parent, each exit (``exited``: gen, returncode,
as ``Popen`` would give it). Each app dies with the standby (``PR_SET_PDEATHSIG``, as the
standby dies with the monitor), so a standby that is no longer wanted *retires*: it stops taking
``load`` and exits after its last app (at once if it has none). SIGINT and SIGTERM retire it too.

While it waits, nothing runs in it: the control channel and a ``pidfd`` per app are watched with
the real (unpatched) ``select``, read with ``recvmsg`` (the descriptor rides on the first byte
of its message), one byte at a time, so nothing is ever half read. Runs in the child, after
gevent has patched; ``_socket`` is the unpatched socket.
"""

from __future__ import annotations

import _socket
import array
import fcntl
import gc
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import gevent
import gevent.socket
from gevent import monkey

from geventdev.protocol import Message

#: The unpatched ``select`` and ``close``, for processes whose hub never runs (a standby, a
#: pristine copy): gevent's ``os.close`` (25.8.1+) defers the close to its loop
#: (https://github.com/gevent/gevent/issues/2100).
real_select = monkey.get_original("select", "select")
real_close = monkey.get_original("os", "close")
#: Set while we fork a process of ours (``fork_frozen``): the at-fork hooks that detach a
#: process *the app* forks (``app.main.detach_forks``) must leave this one alone.
OWN_FORK = [False]


def own_fork() -> bool:
    return OWN_FORK[0]


#: The real ``os.fork``: the child makes its hub anew itself (``gevent.reinit``), once its
#: channel is on the fd number the code above it reads (``Pristine.fork``).
_real_fork = monkey.get_original("os", "fork")


def fork_frozen() -> int:
    """Fork a process of ours (a standby's app process, a pristine copy's worker), not one the
    app forks (``OWN_FORK``). The objects from before the fork are frozen in the child, so its
    garbage collector leaves them alone until it thaws them: a full collection writes to every
    object's header, and each page written is a copy (400 modules: a restart 190 -> 160 ms)."""
    gc.freeze()
    OWN_FORK[0] = True
    try:
        pid: int = _real_fork()
    finally:
        OWN_FORK[0] = False
    if pid != 0:
        gc.unfreeze()
    return pid


def pidfd_of(pid: int) -> int:
    """A descriptor that is readable once child ``pid`` has exited, or -1 (Linux < 5.3, macOS:
    its exit is seen at a poll)."""
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return -1


def exit_status(pid: int) -> int | None:
    """Child ``pid``'s wait status once it has exited (reaped here), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped elsewhere: its status is lost
        return 1 << 8
    return status if done else None


def write_all(fd: int, data: bytes) -> bool:
    """Write ``data`` to a channel whose fd may be non-blocking (gevent sets it so); False if
    the reader is gone."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # wait for room
            real_select([], [fd], [])
        except OSError:
            return False
    return True


def unshareable(keep: set[int]) -> str:
    """Why a fork of this process would not be what a cold start makes: a native thread (a fork
    has only the thread that forked), a socket the project opened while loading (a database
    connection made at import: each process forked from this one would share it with the one
    still draining), or a file open for reading and writing (an SQLite database). "" if there
    is none; ``keep``: the descriptors shared on purpose."""
    try:
        threads = os.listdir("/proc/self/task")
        if len(threads) > 1:
            names = {Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in threads}
            return f"a thread ({', '.join(sorted(names))})"
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: the fork is taken on trust
        return ""
    for fd in sorted(set(fds) - keep):
        try:
            mode, flags = os.fstat(fd).st_mode, fcntl.fcntl(fd, fcntl.F_GETFL)
        except OSError:  # the listing's own fd, closed by now
            continue
        if stat.S_ISSOCK(mode):
            return f"a socket (fd {fd})"
        # A file open for reading and writing: SQLite's database, which must not cross a
        # fork (https://www.sqlite.org/howtocorrupt.html#_carrying_an_open_database_connection_across_a_fork_).
        if stat.S_ISREG(mode) and flags & os.O_ACCMODE == os.O_RDWR and not _shared_memory(fd):
            return f"a file open for writing and reading (fd {fd})"
    return ""


def _shared_memory(fd: int) -> bool:
    """A ``multiprocessing`` heap arena (``Value``, ``Array``: the debugger's PIN counter is
    one): memory made to be shared with forks, in a file named ``pym-PID-...``."""
    try:
        return os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith("pym-")
    except OSError:
        return False


@dataclass
class Load:
    """A ``load`` read from the channel: the app's generation, the paths changed since the
    standby began, the new process's control channel."""

    message: Message
    fds: list[int] = field(default_factory=list)

    @property
    def gen(self) -> int:
        return int(self.message.data.get("gen", 0))

    @property
    def paths(self) -> list[str]:
        return list(self.message.data.get("paths", ()))

    @property
    def wait(self) -> bool:
        """Fork once loaded up to the pause point (a cold start), not at the next chance."""
        return bool(self.message.data.get("wait"))


class Zygote:
    """The control channel of a standby, and the app processes it forked.

    ``handle``: any other message from the monitor (``drain`` retires the standby: handled
    here). ``prepare``: run with a ``load`` before the fork (its environment is the app's).
    ``became_app``: run in the new process, with the pid of the standby it came from.
    ``on_retire``: run once when it retires (it renames the process). ``keep_fds``: sockets
    every app process shares on purpose (the listening socket).
    """

    def __init__(
        self,
        control_fd: int,
        handle: Callable[[Message], None],
        prepare: Callable[[Message], None],
        became_app: Callable[[int], None],
        on_retire: Callable[[], None] = lambda: None,
        keep_fds: tuple[int, ...] = (),
    ) -> None:
        self.control_fd = control_fd
        self.sock = _socket.socket(fileno=control_fd)  # unpatched: no hub runs in a standby
        self.handle, self.prepare, self.became_app = handle, prepare, became_app
        self.on_retire = on_retire
        self.keep_fds = keep_fds  # ours, shared on purpose with every app process (the port)
        self.apps: dict[int, tuple[int, int]] = {}  # pid -> (gen, pidfd)
        self.load: Load | None = None
        self.retiring = False

    # -- the channel ----------------------------------------------------------------------
    def send(self, message: Message) -> None:
        if not write_all(self.control_fd, message.encode()):  # the monitor is gone
            os._exit(1)

    def poll(self, block: bool = False) -> None:
        """Read the messages waiting (with ``block``, wait for the first message or app exit),
        and reap the apps that exited."""
        pidfds = [pidfd for _gen, pidfd in self.apps.values() if pidfd >= 0]
        timeout = None if block else 0.0
        if block and len(pidfds) < len(self.apps):  # no pidfd (macOS): look again soon
            timeout = 0.2
        ready = real_select([self.control_fd, *pidfds], [], [], timeout)[0]
        if self.control_fd in ready:
            self._read_message()
            while real_select([self.control_fd], [], [], 0)[0]:
                self._read_message()
        self.reap()

    def _read_message(self) -> None:
        line, fds = b"", array.array("i")
        while not line.endswith(b"\n"):
            real_select([self.control_fd], [], [])
            try:
                byte, ancillary, _flags, _addr = self.sock.recvmsg(1, socket.CMSG_SPACE(16))
            except BlockingIOError:
                continue
            except OSError:
                os._exit(1)
            if not byte:  # the monitor is gone
                os._exit(1)
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            line += byte
        message = Message.parse(line)
        if message is None:  # malformed: dropped
            return
        if message.type == "load":
            if self.retiring or self.load is not None:  # not ours to serve any more
                self.refuse(Load(message, list(fds)), exit=False)
            else:
                self.load = Load(message, list(fds))
        elif message.type == "drain":
            self.retire()
        else:
            self.handle(message)

    # -- the apps -------------------------------------------------------------------------
    def take_over(self, load: Load, reason: str) -> None:
        """Become app process ``load.gen`` ourselves (the monitor is told: ``took_over``, and
        why), as a standby did before it forked: the last head start for such a project."""
        self.load = None
        self.prepare(load.message)
        for fd in load.fds:
            real_close(fd)
        self.send(Message("took_over", {"gen": load.gen, "reason": reason}))
        self.retiring = True  # no more loads; the apps we forked are reaped while we serve
        for pid, (gen, pidfd) in self.apps.items():
            gevent.spawn(self._reap_later, pid, gen, pidfd)
        self.apps.clear()
        self.became_app(0)

    def _reap_later(self, pid: int, gen: int, pidfd: int) -> None:
        if pidfd >= 0:
            gevent.socket.wait_read(pidfd)
            real_close(pidfd)
        _done, status = os.waitpid(pid, 0)
        self.report(gen, status)

    def fork(self, load: Load) -> bool:
        """Fork app process ``load.gen``; True in it (its channel is in place), False here.
        If that would not be a cold start's equal (``unshareable``), we become it instead."""
        reason = unshareable({0, 1, 2, self.control_fd, *self.keep_fds, *load.fds})
        if reason:
            self.take_over(load, reason)
            return True
        self.load = None
        self.prepare(load.message)
        standby = os.getpid()
        pid = fork_frozen()  # the app process thaws once loaded (``thaw``)
        if pid == 0:
            gevent.reinit()  # the child's hub made anew (no watcher was on the channel's fd)
            for _gen, pidfd in self.apps.values():  # the standby's children, not ours
                if pidfd >= 0:
                    real_close(pidfd)
            self.apps.clear()
            self.sock.detach()  # the fd number is about to be the app's own channel
            if load.fds:
                os.dup2(load.fds[0], self.control_fd, inheritable=False)
                # The socket object over this fd number is gevent's: it expects O_NONBLOCK
                # (a flag of the open file, which the monitor's new socket does not have).
                os.set_blocking(self.control_fd, False)
            for fd in load.fds:
                real_close(fd)
            self.became_app(standby)
            return True
        for fd in load.fds:
            real_close(fd)
        self.apps[pid] = (load.gen, pidfd_of(pid))
        self.send(Message("forked", {"gen": load.gen, "pid": pid}))
        return False

    @staticmethod
    def thaw() -> None:
        """In the app process, once loaded: the objects from before the fork are collectable
        again (while frozen, ``gc.get_objects()`` does not list them either)."""
        gc.unfreeze()

    def reap(self) -> None:
        """Report each app that exited (``Popen``'s returncode: -N for signal N)."""
        for pid, (gen, pidfd) in list(self.apps.items()):
            status = exit_status(pid)
            if status is not None:
                if pidfd >= 0:
                    real_close(pidfd)
                del self.apps[pid]
                self.report(gen, status)
        if self.retiring and not self.apps:
            os._exit(0)

    def report(self, gen: int, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        self.send(Message("exited", {"gen": gen, "returncode": code}))

    def refuse(self, load: Load, exit: bool = True) -> None:
        """Answer ``stale`` for app ``load.gen`` (never forked); retire unless ``exit`` is
        False (a ``load`` that came after the retirement began)."""
        self.load = None
        for fd in load.fds:
            real_close(fd)
        self.send(Message("stale", {"gen": load.gen}))
        if exit:
            self.retire()

    def retire(self) -> NoReturn:
        """Take no more ``load``; exit after the last app (they would die with us)."""
        if not self.retiring:
            self.retiring = True
            self.reap()  # none: exit now
            self.on_retire()
        while True:
            self.reap()  # exits once no app is left
            self.poll(block=True)
