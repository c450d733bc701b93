"""The monitor: the process the user starts. Dumb and permanent.

It binds the listening socket once, watches files, spawns children with the socket passed by
``pass_fds``, and carries out what ``supervisor.Plan`` decides. It never imports gevent or the
user's app: watchdog's threads stay real threads and the app is imported only where it is served.
"""

from __future__ import annotations

import errno
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from .config import Config
from .envfiles import env_files, environ_with_env_files
from .fallback import FallbackResponder, StdinCommands
from .protocol import Handoff, iter_messages
from .supervisor import (
    Action,
    Changes,
    ChildExited,
    ChildMessage,
    Event,
    Exit,
    Fallback,
    Log,
    Plan,
    Restart,
    Signal,
    Spawn,
    Start,
    Stop,
    Tick,
    Watch,
)
from .terminal import ensure_echo_on
from .watcher import ChangeFilter, Debouncer, Kind, WatchdogWatcher, project_root

CHILD_MODULE = "geventdev.child"
BACKLOG = 2048


class BindError(Exception):
    """The socket could not be bound: the message is one actionable line."""


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind and listen once, for the monitor's whole life; children inherit the socket.

    ``TCP_NODELAY`` is set on the listener, and accepted sockets inherit it: pywsgi writes headers
    and body in two sends, and with Nagle on, every keep-alive response waits ~40 ms for an ACK.
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        raise BindError(
            f"Could not resolve host {host!r}: use an IP address or a known name."
        ) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise BindError(bind_error_message(exc, host, port)) from None
    sock.set_inheritable(True)
    return sock


def bind_error_message(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        hint = " On macOS, try disabling the 'AirPlay Receiver' service." if port == 5000 else ""
        return (
            f"Port {port} is in use by another program. Stop that program, or start the server "
            f"with a different port (-p).{hint}"
        )
    if exc.errno == errno.EACCES:
        return f"Permission denied binding port {port}: ports below 1024 need root; use -p 5000."
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"Cannot bind {host!r}: no network interface has that address."
    return f"Cannot listen on {host}:{port}: {exc.strerror or exc}."


class Monitor:
    """Runs the event loop: file changes, child messages and exits, signals, deadlines."""

    def __init__(
        self, config: Config, listener: socket.socket, environ: Mapping[str, str], out: TextIO
    ) -> None:
        self.config, self.listener, self.environ, self.out = config, listener, dict(environ), out
        self.events: queue.Queue[Event | tuple[str, Kind]] = queue.Queue()
        self.plan = Plan(graceful_timeout=config.graceful_timeout, reload=config.use_reloader)
        self.debouncer = Debouncer(config.debounce)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.watched_files = (*config.extra_files, *env_files(config.env_file, self.environ))
        self.changes = ChangeFilter(self.watched_files, config.exclude_patterns)
        self.fallback = FallbackResponder(listener)
        self.stdin = StdinCommands(lambda: self.events.put(Restart("'rs'")))
        self.watcher: WatchdogWatcher | None = None
        self.exit_code: int | None = None

    def log(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run(self) -> int:
        """Serve until a signal or a fatal start-up error; return the exit status."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda n, _f: self.events.put(Stop(n)))
        signal.signal(signal.SIGHUP, lambda n, _f: self.events.put(Restart("SIGHUP")))
        if self.config.use_reloader:
            self.start_watching()
        self.perform(self.plan.step(Start(), time.monotonic()))
        try:
            while self.exit_code is None:
                event = self.next_event()
                if isinstance(event, ChildExited):
                    ensure_echo_on()
                self.perform(self.plan.step(event, time.monotonic()))
        finally:
            if self.watcher is not None:
                self.watcher.stop()
        return self.exit_code

    def next_event(self) -> Event:
        """Block until the next event; raw file changes are debounced here into ``Changes``."""
        while True:
            now = time.monotonic()
            batch = self.debouncer.pop_due(now)
            if batch:
                return Changes(dict(batch))
            deadlines = [d for d in (self.debouncer.deadline(), self.plan.next_deadline()) if d]
            timeout = max(0.0, min(deadlines) - now) if deadlines else 1.0
            try:
                item = self.events.get(timeout=timeout)
            except queue.Empty:
                return Tick()
            if not isinstance(item, tuple):
                return item
            self.debouncer.add(item[0], item[1], time.monotonic())

    def start_watching(self) -> None:
        self.watcher = WatchdogWatcher(
            self.changes,
            emit=lambda path, kind: self.events.put((path, kind)),
            warn=lambda text: self.log(f" * Warning: {text}"),
            polling=self.config.reloader_type == "stat",
        )
        self.watcher.start()
        self.watcher.watch(project_root(self.config.app))
        for path in self.watched_files:
            self.watcher.watch(Path(path).resolve().parent, recursive=False)

    def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Spawn):
                self.fallback.answer(None)
                self.stdin.active.clear()
                self.spawn(action.gen)
            elif isinstance(action, Fallback):
                self.fallback.answer(action.message)
                self.stdin.active.set()
            elif isinstance(action, Signal):
                self.send_signal(action.gen, action.signum)
            elif isinstance(action, Log):
                self.log(action.text)
            elif isinstance(action, Watch) and self.watcher is not None:
                for directory in {Path(p).parent for p in action.paths}:
                    self.watcher.watch(directory, recursive=False)
            elif isinstance(action, Exit):
                self.exit_code = action.code

    def spawn(self, gen: int) -> None:
        ours, theirs = socket.socketpair()
        handoff = Handoff(
            listen_fd=self.listener.fileno(),
            control_fd=theirs.fileno(),
            config_json=self.config.to_json(),
            monitor_pid=os.getpid(),
        )
        env = {**environ_with_env_files(self.config.env_file, self.environ), **handoff.to_environ()}
        proc = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE],
            pass_fds=(handoff.listen_fd, handoff.control_fd),
            env=env,
        )
        theirs.close()
        self.procs[gen] = proc
        threading.Thread(target=self.read_messages, args=(gen, ours), daemon=True).start()
        threading.Thread(target=self.wait_exit, args=(gen, proc), daemon=True).start()

    def read_messages(self, gen: int, control: socket.socket) -> None:
        with control, control.makefile("rb") as stream:
            for message in iter_messages(stream):
                self.events.put(ChildMessage(gen, message))

    def wait_exit(self, gen: int, proc: subprocess.Popen[bytes]) -> None:
        returncode = proc.wait()
        self.procs.pop(gen, None)
        self.events.put(ChildExited(gen, returncode))

    def send_signal(self, gen: int, signum: int) -> None:
        proc = self.procs.get(gen)
        if proc is not None and proc.returncode is None:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass
