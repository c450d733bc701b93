"""The monitor: the process the user starts. Dumb and permanent.

It binds the listening socket once, watches files, spawns children with the socket passed by
``pass_fds``, and carries out what ``plan.Plan`` decides. It never imports gevent or the
user's app: watchdog's threads stay real threads and the app is imported only where it is served.
"""

from __future__ import annotations

import contextlib
import importlib.util
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

from geventdev import tls
from geventdev.config import Config
from geventdev.monitor.envfiles import debugger_env, env_files, environ_with_env_files
from geventdev.monitor.interpreter import interpreter_options
from geventdev.monitor.plan import (
    Action,
    Activate,
    Changes,
    ChildExited,
    ChildMessage,
    Drain,
    Event,
    Exit,
    Fallback,
    Log,
    Notify,
    Plan,
    Restart,
    Signal,
    Spawn,
    Start,
    Stop,
    Tick,
    Watch,
)
from geventdev.monitor.responder import FallbackResponder
from geventdev.monitor.terminal import StdinCommands, ensure_echo_on
from geventdev.monitor.watch import ChangeFilter, Debouncer, Kind, WatchdogWatcher, project_root
from geventdev.protocol import ENV_PIN_FAILURES, Handoff, Message, iter_messages

CHILD_MODULE = "geventdev.app"


class Monitor:
    """Runs the event loop: file changes, child messages and exits, signals, deadlines."""

    def __init__(
        self, config: Config, listener: socket.socket, environ: Mapping[str, str], out: TextIO
    ) -> None:
        self.config, self.listener, self.environ, self.out = config, listener, dict(environ), out
        # SimpleQueue: signal handlers put into it, and may run while the main thread is inside
        # get(); queue.Queue's lock is not reentrant there (a deadlock), SimpleQueue's put is.
        self.events: queue.SimpleQueue[Event | tuple[str, Kind]] = queue.SimpleQueue()
        dotenv_files = env_files(config.env_file, self.environ)
        self.plan = Plan(
            graceful_timeout=config.graceful_timeout,
            reload=config.use_reloader,
            standby=config.standby,
            cold_files=frozenset(dotenv_files),
        )
        self.controls: dict[int, socket.socket] = {}
        self.preload: tuple[str, ...] = ()  # library modules the last app process imported
        self.pin_failures = 0  # the debugger's lockout count, carried across app processes
        self.debouncer = Debouncer(config.debounce)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.watched_files = (*config.extra_files, *dotenv_files)
        self.changes = ChangeFilter(self.watched_files, config.exclude_patterns)
        self.fallback = FallbackResponder(listener, tls.server_context(config))
        self.stdin = StdinCommands(lambda: self.events.put(Restart("'rs'")))
        self.watcher: WatchdogWatcher | None = None
        self.exit_code: int | None = None

    def log(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run(self) -> int:
        """Serve until a signal or a fatal start-up error; return the exit status. The signal
        handlers it sets are put back on return (``geventdev.run()`` returns to its caller)."""
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda n, _f: self.events.put(Stop(n)))
        signal.signal(signal.SIGHUP, lambda n, _f: self.events.put(Restart("SIGHUP")))
        try:
            if self.config.use_reloader:
                self.start_watching()
            self.perform(self.plan.step(Start(), time.monotonic()))
            while self.exit_code is None:
                event = self.next_event()
                if isinstance(event, ChildExited):
                    ensure_echo_on()
                elif isinstance(event, Changes):
                    forget_bytecode(event.paths)
                self.perform(self.plan.step(event, time.monotonic()))
        finally:
            if self.watcher is not None:
                self.watcher.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.exit_code

    def next_event(self) -> Event:
        """Block until the next event; raw file changes are debounced here into ``Changes``."""
        while True:
            # Take every raw change already queued first: a backlog (20,000 files created at
            # once) is not a quiet spell, however long this loop took to get to it.
            while True:
                try:
                    item = self.events.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(item, tuple):
                    return item
                self.debouncer.add(item[0], item[1], time.monotonic())
            now = time.monotonic()
            batch = self.debouncer.pop_due(now)
            if batch:
                return Changes(dict(batch))
            kill_at = self.plan.next_deadline()
            if kill_at is not None and kill_at <= now:  # due even while events keep coming
                return Tick()
            deadlines = [d for d in (self.debouncer.deadline(), kill_at) if d]
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
            if isinstance(action, (Spawn, Activate)) and not getattr(action, "standby", False):
                self.fallback.answer(None)  # requests wait in the backlog for the new process
                self.stdin.active.clear()
            if isinstance(action, Spawn):
                self.spawn(action.gen, action.standby)
            elif isinstance(action, Activate):
                self.send(action.gen, Message("load", {"pin_failures": self.pin_failures}))
            elif isinstance(action, Drain):
                self.send(action.gen, Message("drain", {"timeout": action.timeout}))
            elif isinstance(action, Notify):
                self.send(action.gen, Message("changed", {"paths": list(action.paths)}))
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

    def spawn(self, gen: int, standby: bool = False) -> None:
        ours, theirs = socket.socketpair()
        handoff = Handoff(
            listen_fd=self.listener.fileno(),
            control_fd=theirs.fileno(),
            config_json=self.config.to_json(),
            monitor_pid=os.getpid(),
            standby=standby,
            preload=self.preload,
        )
        env = {
            **debugger_env(self.environ),  # GEVENT_SUPPORT=True when an IDE debugger is loaded
            **environ_with_env_files(self.config.env_file, self.environ),
            **handoff.to_environ(),
            ENV_PIN_FAILURES: str(self.pin_failures),
        }
        # The child starts with SIGINT ignored (dispositions survive exec), so a Ctrl+C while it is
        # still importing prints no KeyboardInterrupt traceback; it handles SIGINT itself once
        # it can drain, and the monitor's own stop signal follows the terminal's anyway.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            proc = subprocess.Popen(
                [sys.executable, *interpreter_options(sys.orig_argv), "-m", CHILD_MODULE],
                pass_fds=(handoff.listen_fd, handoff.control_fd),
                env=env,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        theirs.close()
        self.procs[gen], self.controls[gen] = proc, ours
        threading.Thread(target=self.read_messages, args=(gen, ours), daemon=True).start()
        threading.Thread(target=self.wait_exit, args=(gen, proc), daemon=True).start()

    def read_messages(self, gen: int, control: socket.socket) -> None:
        with control, control.makefile("rb") as stream, contextlib.suppress(OSError):
            # OSError: a child killed with a message unread resets the channel; its exit follows.
            for message in iter_messages(stream):
                if message.type == "watch" and message.data.get("modules"):
                    self.preload = tuple(message.data["modules"])
                elif message.type == "pin_failures":
                    self.pin_failures = int(message.data.get("count", 0))
                self.events.put(ChildMessage(gen, message))
        self.controls.pop(gen, None)

    def send(self, gen: int, message: Message) -> None:
        control = self.controls.get(gen)
        try:
            if control is not None:
                control.sendall(message.encode())
        except OSError:  # it died meanwhile: its exit event follows
            pass

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


def forget_bytecode(paths: Mapping[str, str]) -> None:
    """Remove the cached bytecode of changed ``.py`` files, before any process imports them.

    Belt and braces: the app process never writes a ``.pyc`` a same-second save could make
    stale (``app.bytecode``), but one written before geventdev started (by ``flask run``, a
    test run) may be. The app process runs with our interpreter options (``-O`` included), so
    the file it would read is the one ``cache_from_source`` names here.
    """
    for path in paths:
        if path.endswith(".py"):
            with contextlib.suppress(OSError, ValueError, NotImplementedError):
                os.unlink(importlib.util.cache_from_source(path))
