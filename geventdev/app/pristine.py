"""The loaded app kept as it was before its first request: a patch is applied there, and served by
a fresh fork of it, so an in-place patch is a restart's equal for everything the process holds.

Patching the serving process (``app.patch``) keeps what the old code already produced: a result
a caller cached (``@cache.cached``, a memo dict, a lazily built singleton), counters, sessions
kept in memory. A restart drops all of that. So with patching on, the app process that loaded
the app does not serve: once loaded it forks a *worker* that serves, and stays as the load left
it, running nothing (its gevent hub never runs again: a greenlet the project spawned while
loading runs in each worker, as in a cold start). On ``patch`` it patches itself (the checks of
``app.patch`` hold here better than anywhere: no request ever ran in it), forks a new worker,
tells the old one to drain and answers the monitor once the old one no longer accepts: from then
on every new connection is served by a process that has served nothing, with the new code, as
after a restart, in the time of a fork. Requests in flight finish on the old code, as they do
across a restart.

To the monitor this process *is* the app (its generation, its channel, its exit status): it
passes the monitor's messages on to the current worker and the workers' to the monitor, and acts
on ``patch`` and ``drain`` itself. A worker that dies unasked is mirrored (this process exits the
same way), so a crash reads as before. Each worker dies with it (``PR_SET_PDEATHSIG``).

Kept only when a fork is a faithful copy (``zygote.unshareable``: no native thread, no socket or
database file opened while loading); otherwise the process serves itself and edits restart.
While it waits, the channels and a ``pidfd`` per worker are watched with the real (unpatched)
``select``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import gevent

from geventdev.app import patch
from geventdev.app.zygote import (
    exit_status,
    fork_frozen,
    pidfd_of,
    real_close,
    real_select,
    unshareable,
    write_all,
)
from geventdev.protocol import ENV_PIN_FAILURES, Message

#: A worker that has not stopped by its drain's deadline is killed this much later.
KILL_GRACE = 1.0
#: How long a patch waits for the old worker to stop accepting before forking the new one.
CLOSE_WAIT = 0.5


@dataclass
class Channel:
    """One end of a channel of JSON lines, and the bytes read of a line not yet whole."""

    fd: int
    buffer: bytes = b""

    def lines(self) -> tuple[list[bytes], bool]:
        """The whole lines waiting (a partial one stays in ``buffer``), and whether the other
        end is gone."""
        chunks: list[bytes] = []
        gone = False
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                gone = True
                break
            chunks.append(chunk)
            if not real_select([self.fd], [], [], 0)[0]:
                break
        *whole, self.buffer = (self.buffer + b"".join(chunks)).split(b"\n")
        return [line + b"\n" for line in whole if line], gone


@dataclass(kw_only=True)
class Worker(Channel):
    """A serving fork, and our end of its channel."""

    pid: int
    pidfd: int
    ready: bool = False
    kill_at: float | None = None


@dataclass
class Swap:
    """A patch under way: the outcome's line, when it began, the old worker until it has
    closed, then the new one until it serves."""

    log: str
    started: float
    old: int = 0
    new: int = 0
    #: When the old worker, if it has not said it closed (its hub held by a CPU-bound request
    #: or pdb), is left to close while the new one is forked: both accept for a moment then,
    #: as across a restart.
    give_up: float = 0.0


class Pristine:
    """The app process as its load left it, and the workers forked from it (module doc).

    ``control_fd``: the channel to the monitor. ``became_worker``: run in each new worker,
    with this process's pid (its channel to us is in place on ``control_fd``).
    """

    def __init__(
        self,
        control_fd: int,
        became_worker: Callable[[int], None],
        graceful_timeout: float,
    ) -> None:
        self.control_fd = control_fd
        self.became_worker = became_worker
        self.graceful_timeout = graceful_timeout
        self.pid = os.getpid()
        self.workers: dict[int, Worker] = {}
        self.current = 0
        self.swap: Swap | None = None
        self.stopping = False
        self.monitor = Channel(control_fd)
        self.deferred: list[list[str]] | None = None  # patches asked while preparing

    # -- forking ---------------------------------------------------------------------------
    def fork(self) -> bool:
        """Fork a worker; True in it (its channel on ``control_fd``), False here."""
        ours, theirs = socket.socketpair()
        ours_fd, theirs_fd = ours.detach(), theirs.detach()
        pid = fork_frozen()  # the worker thaws once serving (``app.main.serve``)
        if pid == 0:
            real_close(ours_fd)
            for worker in self.workers.values():  # our other workers: not the new one's
                real_close(worker.fd)
                if worker.pidfd >= 0:
                    real_close(worker.pidfd)
            # The channel takes the fd number the code above us reads and writes; only then
            # is the hub made anew, so its watcher on that number watches the new channel.
            os.dup2(theirs_fd, self.control_fd, inheritable=False)
            real_close(theirs_fd)
            os.set_blocking(self.control_fd, False)
            gevent.reinit()
            self.became_worker(self.pid)
            return True
        real_close(theirs_fd)
        os.set_blocking(ours_fd, False)
        self.workers[pid] = Worker(fd=ours_fd, pid=pid, pidfd=pidfd_of(pid))
        return False

    def serve(self) -> bool:
        """Fork the first worker and wait, forking the next one on each patch. True in a
        worker (it goes on to serve); never returns here (this process exits with them)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        if self.fork():
            return True
        self.current = next(iter(self.workers))
        # Its "ready" goes to the monitor before anything else: until the monitor has it, a
        # change restarts, and drains this app at once as one still starting.
        while not self.workers[self.current].ready:
            self._wait()  # a worker that dies first is mirrored (we exit)
        # The load graph and the heap's index (seconds for a big project); between files, the
        # channels are served, a patch waits for the graph.
        self.deferred = []
        patch.prepare_pristine(pause=lambda: self._wait(poll=True))
        deferred, self.deferred = self.deferred, None
        for paths in deferred:
            if self._patch(paths):
                return True
        while True:
            if self._wait():
                return True

    # -- the loop --------------------------------------------------------------------------
    def _wait(self, poll: bool = False) -> bool:
        """Serve the channels and reap; True in a new worker. ``poll``: do not block."""
        pidfds = [w.pidfd for w in self.workers.values() if w.pidfd >= 0]
        deadlines = [w.kill_at for w in self.workers.values() if w.kill_at is not None]
        if self.swap is not None and self.swap.old:
            deadlines.append(self.swap.give_up)
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        if len(pidfds) < len(self.workers):  # no pidfd: look again soon
            timeout = min(timeout, 0.2) if timeout is not None else 0.2
        if poll:
            timeout = 0.0
        fds = [self.control_fd, *(w.fd for w in self.workers.values()), *pidfds]
        ready = set(real_select(fds, [], [], timeout)[0])
        if self.control_fd in ready:
            found, gone = self.monitor.lines()
            for line in found:
                if self._from_monitor(line):
                    return True
            if gone:  # the monitor is gone: so are we (the workers die with us)
                os._exit(1)
        for worker in list(self.workers.values()):
            if worker.fd in ready:
                for line in worker.lines()[0]:
                    if self._from_worker(worker, line):
                        return True
        if self._reap():
            return True
        now = time.monotonic()
        if self.swap is not None and self.swap.old and now >= self.swap.give_up:
            if self._fork_new(self.swap):
                return True
        for worker in self.workers.values():
            if worker.kill_at is not None and worker.kill_at <= now:
                worker.kill_at = None
                _kill(worker.pid, signal.SIGKILL)
        return False

    def _send(self, message: Message | bytes) -> None:
        if not write_all(self.control_fd, _wire(message)):
            os._exit(1)

    def _tell(self, worker: Worker | None, message: Message | bytes) -> None:
        if worker is not None:
            write_all(worker.fd, _wire(message))

    def _from_monitor(self, line: bytes) -> bool:
        message = Message.parse(line)
        if message is None:
            return False
        current = self.workers.get(self.current)
        if message.type == "patch":
            paths = list(message.data.get("paths", ()))
            if self.deferred is not None:  # still preparing (``serve``)
                declined = patch.declined_at_once(paths)  # an added route: say so now
                if declined is None:
                    self.deferred.append(paths)
                else:
                    self._send(Message("patched", declined.to_message()))
                return False
            return self._patch(paths)
        if message.type == "drain":
            self.stopping = True
            for worker in self.workers.values():
                self._tell(worker, line)
            self._exit_if_done()
        else:  # the PIN count (kept for the next worker too), files changed...
            if message.type == "pin_failures":
                os.environ[ENV_PIN_FAILURES] = str(message.data.get("count", 0))
            self._tell(current, line)
        return False

    def _from_worker(self, worker: Worker, line: bytes) -> bool:
        """A worker's message; True in a new worker (forked once the old one closed)."""
        message = Message.parse(line)
        if message is None:
            return False
        kind, swap = message.type, self.swap
        if kind == "draining":
            if swap is not None and worker.pid == swap.old and not self.stopping:
                return self._fork_new(swap)  # the old code no longer accepts
            if self.stopping and worker.pid == self.current:  # the monitor asked for it
                self.swap = None
                self._send(line)
            return False  # an old worker's, once it closed: ours to know, not the monitor's
        if kind == "ready":
            worker.ready = True
            if swap is not None and worker.pid == swap.new:
                self.current = worker.pid
                self._patched(swap)
                return False
        self._send(line)
        return False

    def _drain(self, worker: Worker) -> None:
        worker.kill_at = time.monotonic() + self.graceful_timeout + KILL_GRACE
        self._tell(worker, Message("drain", {"timeout": self.graceful_timeout}))

    def _patched(self, swap: Swap) -> None:
        self.swap = None
        took = round((time.monotonic() - swap.started) * 1000)
        self._send(Message("patched", {"ok": True, "log": swap.log.replace("{ms}", str(took))}))

    def _patch(self, paths: list[str]) -> bool:
        """Patch ourselves; the old worker stops accepting, then the new one is forked (True:
        in it). Never both at once: a request is never answered by the old code once the new
        code has answered one (connections wait in the shared socket's backlog meanwhile)."""
        if self.swap is not None or self.stopping:
            busy = "stopping" if self.stopping else "a patch is under way"
            self._send(Message("patched", {"ok": False, "log": busy}))
            return False
        started = time.monotonic()
        outcome = patch.attempt(paths)
        if self.stopping:  # Ctrl+C while patching: no new worker (it was not signalled)
            outcome = patch.Outcome(False, "stopping")
        if not outcome.ok:
            self._send(Message("patched", outcome.to_message()))
            return False
        self.swap = swap = Swap(outcome.log, started)
        old = self.workers.get(self.current)
        if old is None:
            return self._fork_new(swap)
        swap.old, swap.give_up = old.pid, time.monotonic() + CLOSE_WAIT
        self._drain(old)
        return False

    def _fork_new(self, swap: Swap) -> bool:
        if self.stopping:  # a stop came first: no worker that was not told to stop
            self.swap = None
            return False
        swap.old = 0
        if self.fork():
            return True
        swap.new = next(reversed(self.workers))  # the newest (pids are not in order)
        return False

    # -- exits -----------------------------------------------------------------------------
    def _reap(self) -> bool:
        """Reap the workers that exited; True in a new worker (see ``_from_worker``)."""
        for pid, worker in list(self.workers.items()):
            status = exit_status(pid)
            if status is None:
                continue
            del self.workers[pid]
            real_close(worker.fd)
            if worker.pidfd >= 0:
                real_close(worker.pidfd)
            swap = self.swap
            if swap is not None and pid == swap.new:  # the patched copy died starting
                self.swap = None
                code = os.waitstatus_to_exitcode(status)
                self._send(
                    Message("patched", {"ok": False, "log": f"its new worker exited ({code})"})
                )
            elif swap is not None and pid == swap.old:  # gone before it said it closed
                if self._fork_new(swap):
                    return True
            elif pid == self.current and not self.stopping and swap is None:
                mirror(status)
        self._exit_if_done()
        return False

    def _exit_if_done(self) -> None:
        if self.stopping and not self.workers:
            os._exit(0)

    def _on_signal(self, signum: int, _frame: object) -> None:
        """Ctrl+C (the whole group: the workers have it too) or SIGTERM from the monitor:
        the workers drain as they would serving alone; we exit after them."""
        if os.getpid() != self.pid:  # a worker before its own handlers are in place
            os._exit(0)
        self.stopping = True
        for pid in self.workers:
            _kill(pid, signum)
        self._exit_if_done()


def _wire(message: Message | bytes) -> bytes:
    """A message as it crosses a channel (a line passed on as it came is already that)."""
    return message if isinstance(message, bytes) else message.encode()


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def mirror(status: int) -> NoReturn:
    """Exit as the worker did: its code, or killed by the same signal."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGKILL, signal.SIGSTOP):  # those two have no handler
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def keep(control_fd: int, listen_fd: int) -> str:
    """Why this process cannot be kept as the pristine copy ("" if it can): what a fork cannot
    share (``zygote.unshareable``), or a process the project started while loading (a restart
    starts a new one; every worker of ours would share the one)."""
    try:
        children = Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()
    except OSError:
        children = []
    if children:
        return f"a child process (pid {children[0]})"
    # A ``threading.Thread`` started while loading is a greenlet under gevent, not a native
    # thread: it would go on running in each worker, but Python's after-fork hook marks every
    # thread but the forking one stopped there (``is_alive()`` False: "start it if it is not
    # running" code would start a second one), unlike in a cold start.
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if others:
        return f"a thread ({', '.join(sorted(others))})"
    return unshareable({0, 1, 2, control_fd, listen_fd})
