"""The monitor: the process the user starts. Dumb and permanent.

It binds the listening socket once, watches files, spawns children with the socket passed by
``pass_fds``, and carries out what ``plan.Plan`` decides. It never imports gevent or the
user's app: watchdog's threads stay real threads and the app is imported only where it is served.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
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

from geventdev import logs, tls
from geventdev.config import Config
from geventdev.monitor import libraries
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
    Remember,
    Restart,
    Signal,
    Spawn,
    Start,
    Stop,
    Tick,
    TryPatch,
    Watch,
)
from geventdev.monitor.responder import FallbackResponder
from geventdev.monitor.terminal import StdinCommands, ensure_echo_on
from geventdev.monitor.watch import (
    ChangeFilter,
    Debouncer,
    Kind,
    WatchdogWatcher,
    polling_reason,
    project_root,
)
from geventdev.protocol import ENV_DEBUG_PIN, ENV_PIN_FAILURES, Handoff, Message, iter_messages
from geventdev.stdio import unbreakable

CHILD_MODULE = "geventdev.app"


class Monitor:
    """Runs the event loop: file changes, child messages and exits, signals, deadlines."""

    def __init__(
        self, config: Config, listener: socket.socket, environ: Mapping[str, str], out: TextIO
    ) -> None:
        self.config, self.listener, self.environ = config, listener, dict(environ)
        self.out = unbreakable(out)  # a closed pipe (`| head`) drops log lines, never the monitor
        # SimpleQueue: signal handlers put into it, and may run while the main thread is inside
        # get(); queue.Queue's lock is not reentrant there (a deadlock), SimpleQueue's put is.
        self.events: queue.SimpleQueue[Event | tuple[str, Kind]] = queue.SimpleQueue()
        dotenv_files = env_files(config.env_file, self.environ)
        # The last run's library modules, for the first standby (only a standby uses them).
        remembered = config.standby and config.use_reloader
        self.libraries_file = (
            libraries.cache_file(project_root(config.app), config.app, self.environ)
            if remembered
            else None
        )
        self.plan = Plan(
            graceful_timeout=config.graceful_timeout,
            reload=config.use_reloader,
            standby=config.standby,
            fork_cold=config.standby and config.use_reloader,
            cold_files=frozenset(dotenv_files),
            patch=config.patch,
            libraries=libraries.load(self.libraries_file),
        )
        self.controls: dict[int, socket.socket] = {}
        self.pin_failures = 0  # the debugger's lockout count, carried across app processes
        self.debug_pin = ""  # "PIN|cookie name" the first debugger chose, for every later one
        self.send_lock = threading.Lock()  # reader threads share PIN counts with every child
        self.pin_lock = threading.Lock()
        self.debouncer = Debouncer(config.debounce)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        # App processes a standby forked (not ours to wait for: the standby reports their
        # exit), and signals for one whose pid is not known yet.
        self.forked: dict[int, int] = {}
        self.early_signals: dict[int, list[int]] = {}
        self.readers: dict[int, threading.Thread] = {}
        log_config = (config.log_config,) if config.log_config else ()  # re-read by each child
        self.watched_files = (*config.extra_files, *dotenv_files, *log_config)
        self.changes = ChangeFilter(
            self.watched_files,
            config.exclude_patterns,
            include=config.reload_include,
            exclude=config.reload_exclude,
        )
        self.fallback = FallbackResponder(listener, tls.server_context(config))
        self.stdin = StdinCommands(lambda: self.events.put(Restart("'rs'")))
        self.watcher: WatchdogWatcher | None = None
        self.exit_code: int | None = None

    def log(self, text: str) -> None:
        """One of geventdev's lines, on the ``geventdev`` logger (set up by the CLI on ``out``)."""
        logs.say(text)

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
            self.end_children()  # an exception (under geventdev.run()) must leave no server behind
            if self.watcher is not None:
                self.watcher.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.exit_code

    def end_children(self) -> None:
        """Kill app processes still alive (only after an exception: a stop waits for them all).
        ``PR_SET_PDEATHSIG`` covers the monitor's death, not its return to a caller's script."""
        procs = list(self.procs.values())
        for pid in list(self.forked.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be refused
                pass

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
        roots = [(project_root(self.config.app), True)]
        roots += [(Path(d), True) for d in self.changes.extra_dirs]
        roots += [(Path(f).resolve().parent, False) for f in self.changes.extra_files]
        polling = polling_reason(self.config.reloader_type, [str(r) for r, _ in roots])
        self.watcher = WatchdogWatcher(
            self.changes,
            emit=lambda path, kind: self.events.put((path, kind)),
            warn=lambda text: self.log(f" * Warning: {text}"),
            polling=polling is not None,
        )
        self.watcher.start()
        for directory, recursive in roots:
            self.watcher.watch(directory, recursive=recursive)
        shown = ", ".join(dict.fromkeys(str(r) for r, _ in roots))
        how = f"polling ({polling})" if polling else "watchdog"
        self.log(f" * Watching for changes in {shown} with {how}")

    def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, (Spawn, Activate)) and not getattr(action, "standby", False):
                self.fallback.answer(None)  # requests wait in the backlog for the new process
                self.stdin.active.clear()
            if isinstance(action, Spawn):
                self.spawn(action)
            elif isinstance(action, Activate):
                self.activate(action)
            elif isinstance(action, Drain):
                self.send(action.gen, Message("drain", {"timeout": action.timeout}))
            elif isinstance(action, Notify):
                self.send(action.gen, Message("changed", {"paths": list(action.paths)}))
            elif isinstance(action, TryPatch):
                self.send(action.gen, Message("patch", {"paths": list(action.paths)}))
            elif isinstance(action, Fallback):
                self.fallback.answer(action.message)
                self.stdin.active.set()
            elif isinstance(action, Signal):
                self.send_signal(action.gen, action.signum)
            elif isinstance(action, Log):
                logs.say(action.text, action.level)
            elif isinstance(action, Watch) and self.watcher is not None:
                for directory in {Path(p).parent for p in action.paths}:
                    if self.watcher.watch(directory, recursive=False):
                        logs.say(f" * Watching for changes in {directory}", logging.DEBUG)
            elif isinstance(action, Remember):
                libraries.save(self.libraries_file, action.modules)
            elif isinstance(action, Exit):
                self.exit_code = action.code

    def spawn(self, action: Spawn) -> None:
        gen, standby, hot = action.gen, action.standby, action.hot
        ours, theirs = socket.socketpair()
        handoff = Handoff(
            listen_fd=self.listener.fileno(),
            control_fd=theirs.fileno(),
            config_json=self.config.to_json(),
            monitor_pid=os.getpid(),
            standby=standby,
            preload=action.preload,
            hot=hot,
        )
        env = {
            **debugger_env(self.environ),  # GEVENT_SUPPORT=True when an IDE debugger is loaded
            **environ_with_env_files(self.config.env_file, self.environ),
            **handoff.to_environ(),
            ENV_PIN_FAILURES: str(self.pin_failures),
            ENV_DEBUG_PIN: self.debug_pin,
        }
        # SIGINT is *blocked*, not ignored, around the spawn: the child inherits the mask (it
        # survives exec), so a Ctrl+C while it is still importing stays pending and prints no
        # KeyboardInterrupt traceback; the child unblocks it once it can handle it (app.main).
        # Ignoring it here (a process-wide disposition) made the monitor lose a Ctrl+C landing
        # in this window (issue 12); a blocked one reaches another thread or waits until the
        # mask is restored below.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            proc = subprocess.Popen(
                [sys.executable, *interpreter_options(sys.orig_argv), "-m", CHILD_MODULE],
                pass_fds=(handoff.listen_fd, handoff.control_fd),
                env=env,
            )
        except OSError as exc:  # out of memory or file descriptors: say so, keep the monitor
            ours.close()
            theirs.close()
            self.log(f" * Could not start an app process: {exc.strerror or exc}")
            self.events.put(ChildExited(gen, 1))
            return
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        theirs.close()
        self.procs[gen] = proc
        self.listen(gen, ours)
        threading.Thread(target=self.wait_exit, args=(gen, proc), daemon=True).start()

    def activate(self, action: Activate) -> None:
        """Tell the standby to fork app process ``action.app``; its control channel goes along
        (``SCM_RIGHTS``): the new process talks to us as one we started."""
        ours, theirs = socket.socketpair()
        self.listen(action.app, ours)
        load = {"pin_failures": self.pin_failures, "debug_pin": self.debug_pin}
        data = {**load, "paths": list(action.paths), "gen": action.app, "wait": action.wait}
        self.send(action.gen, Message("load", data), fds=[theirs.fileno()])
        theirs.close()

    def listen(self, gen: int, control: socket.socket) -> None:
        self.controls[gen] = control
        reader = threading.Thread(target=self.read_messages, args=(gen, control), daemon=True)
        self.readers[gen] = reader
        reader.start()

    def read_messages(self, gen: int, control: socket.socket) -> None:
        try:
            with control, control.makefile("rb") as stream:
                for message in iter_messages(stream):
                    if message.type in ("forked", "exited"):
                        self.on_fork_report(message)
                        continue
                    if message.type == "pin_failures":
                        self.count_pin_failure(bool(message.data.get("reset")))
                    elif message.type == "debug_pin" and not self.debug_pin:
                        self.debug_pin = f"{message.data['pin']}|{message.data['cookie']}"
                    self.events.put(ChildMessage(gen, message))
        except OSError:
            # A child that died with messages from us still unread: its end resets the
            # connection (ECONNRESET). Its exit event tells the rest; no traceback (issue 12).
            pass
        finally:
            self.controls.pop(gen, None)
            if self.readers.get(gen) is threading.current_thread():
                self.readers.pop(gen, None)

    def count_pin_failure(self, reset: bool) -> None:
        """One wrong PIN anywhere (or a right one: ``reset``), told to every app process.

        Each process reports each failure, never its own count: the count only grows, across
        a draining process and the new one alike, until a right PIN (README "Security")."""
        with self.pin_lock:
            self.pin_failures = 0 if reset else self.pin_failures + 1
            count = self.pin_failures
        for gen in list(self.controls):
            self.send(gen, Message("pin_failures", {"count": count, "reset": reset}))

    def on_fork_report(self, message: Message) -> None:
        """A standby forked app process ``gen`` (``pid``), or reaped it (``returncode``)."""
        gen = int(message.data.get("gen", 0))
        if message.type == "forked":
            with self.send_lock:
                self.forked[gen] = int(message.data["pid"])
                pending = self.early_signals.pop(gen, [])
            for signum in pending:
                self.send_signal(gen, signum)
        else:
            with self.send_lock:
                self.forked.pop(gen, None)
                self.early_signals.pop(gen, None)
            self.events.put(ChildExited(gen, int(message.data.get("returncode", 1))))

    def send(self, gen: int, message: Message, fds: list[int] | None = None) -> None:
        control = self.controls.get(gen)
        try:
            if control is not None:
                with self.send_lock:  # reader threads send too: messages must not interleave
                    if fds:  # a few hundred bytes: one sendmsg carries it all
                        socket.send_fds(control, [message.encode()], fds)
                    else:
                        control.sendall(message.encode())
        except OSError:  # it died meanwhile: its exit event follows
            pass

    def wait_exit(self, gen: int, proc: subprocess.Popen[bytes]) -> None:
        returncode = proc.wait()
        self.procs.pop(gen, None)
        # What it said before it died first: a standby's report that an app it forked exited
        # must reach the plan before its own exit (which would count that app killed).
        reader = self.readers.pop(gen, None)
        if reader is not None:
            reader.join(timeout=2.0)
        self.events.put(ChildExited(gen, returncode))

    def send_signal(self, gen: int, signum: int) -> None:
        proc = self.procs.get(gen)
        if proc is not None and proc.returncode is None:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass
            return
        with self.send_lock:
            pid = self.forked.get(gen)
            if pid is None:  # forking now: delivered when the standby reports the pid
                self.early_signals.setdefault(gen, []).append(signum)
                return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


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
