"""The monitor's decisions, as a pure state machine: events in, actions out.

``Plan.step(event, now)`` holds every decision (when to spawn, whom to stop, when to give up);
``monitor.Monitor`` only performs the actions. This is Django's ``tick()`` split: the logic is
tested without processes, clocks or signals.

Restarts overlap: the new child starts on the shared socket while the old one keeps serving;
once the new one is ready, the old one is told to drain (SIGTERM) and is killed if it takes
longer than the graceful timeout. A request is never refused because no process is listening.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

from .protocol import Message

#: Extra time after a drain deadline before SIGKILL (the child kills its own stragglers first).
KILL_GRACE = 1.0
INF = float("inf")  # a kill_at that has fired


# Events -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class Changes:
    """A debounced batch: path -> "restart" | "refresh"."""

    paths: dict[str, str]


@dataclass(frozen=True)
class ChildMessage:
    gen: int
    message: Message


@dataclass(frozen=True)
class ChildExited:
    gen: int
    returncode: int


@dataclass(frozen=True)
class Restart:
    """A restart by hand: SIGHUP, or "rs" typed in the terminal."""

    reason: str


@dataclass(frozen=True)
class Stop:
    signum: int


@dataclass(frozen=True)
class Tick:
    pass


Event = Start | Changes | Restart | ChildMessage | ChildExited | Stop | Tick


# Actions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spawn:
    gen: int


@dataclass(frozen=True)
class Signal:
    gen: int
    signum: int


@dataclass(frozen=True)
class Log:
    text: str


@dataclass(frozen=True)
class Watch:
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Fallback:
    """No app process is alive: the monitor answers requests itself with this message.
    A ``Spawn`` ends it (requests then wait in the backlog for the new process)."""

    message: str


@dataclass(frozen=True)
class Exit:
    code: int


Action = Spawn | Signal | Log | Watch | Fallback | Exit


@dataclass
class ChildState:
    gen: int
    started: float
    ready: bool = False
    kill_at: float | None = None


@dataclass
class Plan:
    """What the monitor knows: its children by generation and why it is waiting."""

    graceful_timeout: float
    reload: bool = True
    cwd: str = field(default_factory=os.getcwd)
    children: dict[int, ChildState] = field(default_factory=dict)
    gen: int = 0
    ever_ready: bool = False
    stopping: bool = False
    exit_code: int = 0
    change_at: float | None = None

    def step(self, event: Event, now: float) -> list[Action]:
        handler = getattr(self, f"_on_{type(event).__name__.lower()}")
        actions: list[Action] = handler(event, now)
        return actions

    def next_deadline(self) -> float | None:
        deadlines = [c.kill_at for c in self.children.values() if c.kill_at is not None]
        return min((d for d in deadlines if d != INF), default=None)

    def _spawn(self, now: float) -> list[Action]:
        self.gen += 1
        self.children[self.gen] = ChildState(self.gen, now)
        return [Spawn(self.gen)]

    def _stop(self, child: ChildState, signum: int, timeout: float, now: float) -> list[Action]:
        if child.kill_at is not None:
            return []
        child.kill_at = now + timeout + KILL_GRACE
        return [Signal(child.gen, signum)]

    def _on_start(self, event: Start, now: float) -> list[Action]:
        return self._spawn(now)

    def _on_changes(self, event: Changes, now: float) -> list[Action]:
        restart = sorted(p for p, kind in event.paths.items() if kind == "restart")
        if not restart or not self.reload or self.stopping:
            return []
        first = os.path.relpath(restart[0], self.cwd)
        more = f" and {len(restart) - 1} more" if len(restart) > 1 else ""
        return self._restart(f" * Detected change in {first!r}{more}, restarting", now)

    def _on_restart(self, event: Restart, now: float) -> list[Action]:
        if self.stopping:
            return []
        return self._restart(f" * Restart requested ({event.reason}), restarting", now)

    def _restart(self, reason: str, now: float) -> list[Action]:
        actions: list[Action] = [Log(reason)]
        for child in self.children.values():
            if not child.ready:  # still starting with code that is already stale
                actions += self._stop(child, signal.SIGTERM, 0.0, now)
        self.change_at = now
        return actions + self._spawn(now)

    def _on_childmessage(self, event: ChildMessage, now: float) -> list[Action]:
        msg, child = event.message, self.children.get(event.gen)
        if child is None:
            return []
        if msg.type == "watch":
            return [Watch(tuple(msg.data.get("paths", ())))]
        if msg.type == "restart":
            return self._on_restart(Restart("'rs'"), now)
        if msg.type == "load_error":
            if msg.data.get("kind") == "not_found" and not self.ever_ready:
                self.exit_code = 2
                return [Log(f"Error: {msg.data.get('error')}"), *self._stop_all(now)]
            failed = Log(f" * App failed to load: {msg.data.get('error')}; waiting for a change")
            return [failed, Watch(tuple(msg.data.get("paths", ())))]
        # ready
        child.ready = True
        if event.gen != self.gen:
            return []
        self.ever_ready = True
        actions: list[Action] = []
        for old in self.children.values():
            if old.gen != event.gen:
                actions += self._stop(old, signal.SIGTERM, self.graceful_timeout, now)
        if self.change_at is not None:
            took = round((now - self.change_at) * 1000)
            detail = f" (import {msg.data['import_ms']} ms)" if "import_ms" in msg.data else ""
            actions.append(Log(f" * Restarted in {took} ms{detail}"))
            self.change_at = None
        return actions

    def _on_childexited(self, event: ChildExited, now: float) -> list[Action]:
        self.children.pop(event.gen, None)
        if self.stopping:
            return [Exit(self.exit_code)] if not self.children else []
        if event.gen != self.gen:
            return []
        self.change_at = None
        what = f"App {describe_exit(event.returncode)}"
        actions: list[Action] = [Log(f" * {what}; waiting for a change"), Fallback(what)]
        for old in self.children.values():  # the newest code is dead: stop serving older code
            actions += self._stop(old, signal.SIGTERM, self.graceful_timeout, now)
        return actions

    def _on_stop(self, event: Stop, now: float) -> list[Action]:
        if self.stopping:  # a second Ctrl+C: no more waiting
            return [Signal(c.gen, signal.SIGKILL) for c in self.children.values()]
        return self._stop_all(now)

    def _stop_all(self, now: float) -> list[Action]:
        self.stopping = True
        if not self.children:
            return [Exit(self.exit_code)]
        actions: list[Action] = []
        for child in self.children.values():
            child.kill_at = None
            actions += self._stop(child, signal.SIGINT, 1.0, now)
        return actions

    def _on_tick(self, event: Tick, now: float) -> list[Action]:
        actions: list[Action] = []
        for child in self.children.values():
            if child.kill_at is not None and child.kill_at <= now:
                child.kill_at = INF
                actions.append(Signal(child.gen, signal.SIGKILL))
        return actions


def describe_exit(returncode: int) -> str:
    """ "exited with code 3" or "was killed by SIGKILL" (a negative Popen returncode)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {returncode}"
