"""The monitor's decisions, as a pure state machine: events in, actions out.

``Plan.step(event, now)`` holds every decision (when to spawn, whom to stop, when to give up);
``loop.Monitor`` only performs the actions. This is Django's ``tick()`` split: the logic is
tested without processes, clocks or signals.

Restarts overlap: the new child starts on the shared socket while the old one keeps serving;
once the new one is ready, the old one is told to drain on the control channel (never with a
signal: the app may own SIGTERM) and is killed if it takes longer than the graceful timeout. A
request is never refused because no process is listening. " * Restarted in" is logged once every
older app process has confirmed that it stopped accepting (or is gone): from that line on, every
new connection is the new code's. A new process that failed to load serves the error page, and
says so instead.

The warm standby loads the project up to the files edited last (``recent``) and reports what it
read and which directories it searched (``app.gate``). A change activates it unless it read (or
would have found) a changed path (``paths.standby_stale``); one still loading is activated all
the same and answers ``stale`` itself if it turns out it had; a refused one means a cold start.

Activated, the standby *forks*: the new app process (a generation of its own, ``parent`` the
standby's) goes on loading from where the standby stopped, and the standby stays paused, ready
for the next change. App and standby share the pages of everything loaded before the fork
(memory), and no restart imports the libraries again (no cold window, no CPU taken from the
server right after a restart). The standby reports the pid of each app it forked and its exit
status (it is their parent). A standby that is no longer good (stale, replaced, a restart by
hand) *retires* while an app it forked is alive: it stops being a template and exits after its
last app (they would die with it: ``PR_SET_PDEATHSIG``); one without apps is killed at once.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from typing import Literal

from geventdev.config import ENV_FILES
from geventdev.paths import path_forms, standby_stale
from geventdev.protocol import Message


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
    """Start an app process; a ``standby`` one imports libraries, then loads the project up to
    the first ``hot`` file it meets (``app.gate``), and waits for ``Activate``."""

    gen: int
    standby: bool = False
    hot: tuple[str, ...] = ()
    preload: tuple[str, ...] = ()  # library modules to import ahead (the newest app's)


@dataclass(frozen=True)
class Activate:
    """Tell a warm standby to fork app process ``app``, which loads the rest of the app and
    serves; ``paths`` changed since the standby started (it refuses, ``stale``, if it had read
    one). The monitor hands the new process its own control channel through the standby."""

    gen: int
    paths: tuple[str, ...] = ()
    app: int = 0
    wait: bool = False  # fork when it has loaded up to its pause point, not before


@dataclass(frozen=True)
class Drain:
    """Tell an app process (control channel) to stop accepting, finish its requests within
    ``timeout`` seconds and exit; a standby, or one still loading, just exits."""

    gen: int
    timeout: float


@dataclass(frozen=True)
class Signal:
    gen: int
    signum: int


@dataclass(frozen=True)
class Log:
    text: str
    level: int | None = None  # None: from the text (``logs.level_of``)


@dataclass(frozen=True)
class Watch:
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Remember:
    """Keep the library modules the newest app imported for the next run's first standby."""

    modules: tuple[str, ...]


@dataclass(frozen=True)
class Notify:
    """Tell the serving app process about files that changed without needing a restart."""

    gen: int
    paths: tuple[str, ...]


@dataclass(frozen=True)
class TryPatch:
    """Ask app process ``gen`` to patch an edit of ``paths`` (``app.patch``) into its pristine
    copy and serve it from a fresh fork (``app.pristine``); it answers ``patched`` once the old
    worker no longer accepts, and a refusal means the usual restart."""

    gen: int
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Fallback:
    """No app process is alive: the monitor answers requests itself with this message.
    A ``Spawn`` ends it (requests then wait in the backlog for the new process)."""

    message: str


@dataclass(frozen=True)
class Exit:
    code: int


Action = (
    Spawn | Activate | Drain | Signal | Log | Watch | Remember | Notify | TryPatch | Fallback | Exit
)

#: Extra time after a drain deadline before SIGKILL (the child kills its own stragglers first).
KILL_GRACE = 1.0
INF = float("inf")  # a kill_at that has fired
#: An app process that has not answered a ``patch`` by then is restarted (pdb may hold it).
PATCH_TIMEOUT = 2.0
#: The standby pauses before the first of this many most recently edited files it meets.
HOT_FILES = 4
#: A standby a change made stale is replaced at most this often (an app rewriting a file the
#: project reads at import would otherwise keep a core busy); else it is replaced on restart.
RESPAWN_INTERVAL = 5.0


@dataclass
class ChildState:
    gen: int
    started: float
    role: Literal["app", "standby", "retired"] = "app"
    ready: bool = False
    kill_at: float | None = None
    armed: bool = False  # a standby paused in its load (``app.gate``), waiting for Activate
    preloaded: frozenset[str] = frozenset()  # project-side files a standby read ahead
    listed: frozenset[str] = frozenset()  # project directories its imports searched
    names: frozenset[str] = frozenset()  # their importable entries when searched
    closed: bool = False  # confirmed ("draining") that it no longer accepts connections
    failed: bool = False  # its load failed: it serves the error page
    changed: frozenset[str] = frozenset()  # every path changed since this standby began
    parent: int = 0  # the standby an app process was forked from (0: the monitor started it)
    at: str = ""  # the file a paused standby stopped before ("": the end of the load)
    early: bool = False  # a standby activated before it paused (it forked from where it was)

    def stale(self, paths: frozenset[str] = frozenset()) -> bool:
        """Whether this armed standby read (or searched for) a path changed since it began."""
        changed = self.changed | paths
        return self.armed and standby_stale(changed, self.preloaded, self.listed, self.names)


@dataclass
class Plan:
    """What the monitor knows: its children by generation and why it is waiting.

    ``gen`` is the newest app process; older ones drain. With ``standby`` on, one warm process
    waits beside the app, and a restart activates it instead of starting a cold interpreter,
    unless the change touched what it imported ahead, or an env file, or was asked by hand.
    """

    graceful_timeout: float
    reload: bool = True
    standby: bool = False
    cwd: str = field(default_factory=os.getcwd)
    cold_files: frozenset[str] = frozenset()
    children: dict[int, ChildState] = field(default_factory=dict)
    gen: int = 0
    last_gen: int = 0
    ever_ready: bool = False
    stopping: bool = False
    exit_code: int = 0
    change_at: float | None = None
    #: (gen, line, change time): the line that says the swap to ``gen`` is done, logged once
    #: no older app process accepts connections any more ("{ms}" becomes the time it took).
    announce: tuple[int, str, float] | None = None
    #: Cold starts too go through a new standby (``_cold_through_standby``); the monitor sets
    #: it with ``standby`` (the unit tests of the other decisions use plain cold starts).
    fork_cold: bool = False
    patch: bool = False  # try an in-place patch of .py edits before restarting
    patching: tuple[int, frozenset[str], float] | None = None  # (gen, paths, asked at)
    queued: frozenset[str] = frozenset()  # .py changes that came while a patch was pending
    recent: tuple[str, ...] = ()  # .py files edited, most recent first (a standby's hot files)
    #: Library modules the newest app process imported: what a standby imports ahead (the
    #: monitor starts with the last run's, ``monitor.libraries``).
    libraries: tuple[str, ...] = ()
    respawned_at: float = -INF  # when a stale standby was last replaced

    def step(self, event: Event, now: float) -> list[Action]:
        handler = getattr(self, f"_on_{type(event).__name__.lower()}")
        actions: list[Action] = handler(event, now)
        return actions

    def next_deadline(self) -> float | None:
        deadlines = [c.kill_at for c in self.children.values() if c.kill_at is not None]
        if self.patching is not None:
            deadlines.append(self.patching[2] + PATCH_TIMEOUT)
        return min((d for d in deadlines if d != INF), default=None)

    def _apps(self) -> list[ChildState]:
        return [c for c in self.children.values() if c.role == "app"]

    def _standbys(self) -> list[ChildState]:
        """The warm standbys (not being killed: an exit may not be in yet), best first: paused
        ones, then the newest. A second one exists while it loads up to newer hot files."""
        standbys = [c for c in self.children.values() if c.role == "standby" and c.kill_at is None]
        return sorted(standbys, key=lambda c: (c.armed, c.gen), reverse=True)

    def _waiting(self) -> ChildState | None:
        """The standby the next restart activates."""
        return next(iter(self._standbys()), None)

    def _new(self, now: float, role: Literal["app", "standby"], parent: int = 0) -> ChildState:
        """A new generation; an app one becomes the newest code (``gen``)."""
        self.last_gen += 1
        child = self.children[self.last_gen] = ChildState(
            self.last_gen, now, role=role, parent=parent
        )
        if role == "app":
            self.gen = child.gen
        return child

    def _spawn(self, now: float, standby: bool = False) -> list[Action]:
        if self.stopping:  # e.g. a standby for an app that said ready after a fatal not_found
            return []
        if not standby and self.fork_cold:
            return self._cold_through_standby(now)
        child = self._new(now, "standby" if standby else "app")
        if not standby:
            return [Spawn(child.gen)]
        return [Spawn(child.gen, standby=True, hot=self.recent, preload=self.libraries)]

    def _cold_through_standby(self, now: float) -> list[Action]:
        """A cold start (the first one, or when no standby can serve) made by a new standby: it
        loads up to the files edited last, forks the app process there and stays paused, the
        next restart's head start. The same work as a cold interpreter, and the app shares its
        memory with the standby; no second interpreter imports everything once it serves."""
        spawn = self._spawn(now, standby=True)
        standby = self.children[self.last_gen]
        app = self._new(now, "app", parent=standby.gen)
        return [*spawn, Activate(standby.gen, (), app=app.gen, wait=True)]

    def _stop(self, child: ChildState, signum: int, timeout: float, now: float) -> list[Action]:
        if child.kill_at is not None:
            return []
        child.kill_at = now + timeout + KILL_GRACE
        return [Signal(child.gen, signum)]

    def _drain(self, child: ChildState, timeout: float, now: float) -> list[Action]:
        if child.kill_at is not None:
            return []
        child.kill_at = now + timeout + KILL_GRACE
        return [Drain(child.gen, timeout)]

    def _announce(self, now: float) -> list[Action]:
        """Log the swap to the newest code once no older app process accepts any more."""
        if self.announce is None:
            return []
        gen, text, since = self.announce
        if gen != self.gen:
            self.announce = None
            return []
        if any(c.gen != gen and not c.closed for c in self._apps()):
            return []
        self.announce = None
        return [Log(text.replace("{ms}", str(round((now - since) * 1000))))]

    def _on_start(self, event: Start, now: float) -> list[Action]:
        return self._spawn(now)

    def _on_changes(self, event: Changes, now: float) -> list[Action]:
        restart = sorted(p for p, kind in event.paths.items() if kind == "restart")
        if self.stopping:
            return []
        for standby in self._standbys():
            standby.changed |= frozenset(event.paths)
        edited = [p for p in restart if p.endswith(".py")]
        self.recent = tuple(dict.fromkeys([*edited, *self.recent]))[:HOT_FILES]
        if not restart or not self.reload:
            refresh = tuple(sorted(p for p, kind in event.paths.items() if kind == "refresh"))
            current = self.children.get(self.gen)
            serving = current is not None and current.ready and current.kill_at is None
            actions: list[Action] = [Notify(self.gen, refresh)] if refresh and serving else []
            return actions + self._replace_stale_standby(now)
        # Env files always restart cold: a standby's environment was fixed when it started.
        cold = any(p in self.cold_files or os.path.basename(p) in ENV_FILES for p in restart)
        if self.patching is not None and not cold:
            # A change while a patch is pending (the tail of the same save, split by the
            # debounce under load; a formatter saving again): taken once it is answered.
            self.queued |= frozenset(restart)
            return []
        if self.patching is not None:  # an env file: restart for both, now
            restart = sorted({*restart, *self._end_patch()})
        elif not cold and self._patchable(restart):
            self.patching = (self.gen, frozenset(restart), now)
            refresh = tuple(sorted(p for p, kind in event.paths.items() if kind == "refresh"))
            # Templates saved with the code still reach the app (Django's loader cache, tabs).
            notify = [Notify(self.gen, refresh)] if refresh else []
            return [*notify, TryPatch(self.gen, tuple(restart))]
        return self._restart(self._reason(restart), now, frozenset(restart), cold)

    def _reason(self, restart: list[str]) -> str:
        first = os.path.relpath(restart[0], self.cwd)
        more = f" and {len(restart) - 1} more" if len(restart) > 1 else ""
        return f" * Detected change in {first!r}{more}, restarting"

    def _patchable(self, paths: list[str]) -> bool:
        """Python files only, a serving app with no restart under way, and nothing a standby
        imported ahead (it would keep the old copy)."""
        current = self.children.get(self.gen)
        return (
            self.patch
            and all(p.endswith(".py") for p in paths)
            and current is not None
            and current.ready
            and not current.failed  # the error page: nothing to patch
            and current.kill_at is None
            and all(c.ready for c in self._apps())
            and not any(set(paths) & c.preloaded for c in self._standbys())
        )

    def _end_patch(self) -> frozenset[str]:
        """Forget the pending patch: its paths and the changes queued behind it (what a
        restart takes instead)."""
        paths = (self.patching[1] if self.patching is not None else frozenset()) | self.queued
        self.patching, self.queued = None, frozenset()
        return paths

    def _on_patched(self, gen: int, data: dict[str, object], now: float) -> list[Action]:
        if self.stopping or self.patching is None or self.patching[0] != gen:
            return []  # answered too late: a restart (or the stop) is under way
        queued, paths = self.queued, self._end_patch()
        if data.get("ok") and queued:  # then the changes that came meanwhile, as any change
            line = Log(str(data.get("log", " * Patched in place")))
            return [line, *self._on_changes(Changes(dict.fromkeys(queued, "restart")), now)]
        if data.get("ok"):  # a standby that read the old copy is stale (``changed`` has it)
            # No new standby for the next edit a patch cannot take (as ``_on_ready`` starts
            # one): the one there is the parent of the app process, so it would stay beside the
            # new one, retired, for as long as patches keep that app process: a third copy.
            line = Log(str(data.get("log", " * Patched in place")))
            return [line, *self._replace_stale_standby(now)]
        return [Log(f" * Not patched in place: {data.get('log')}"), *self._changed(paths, now)]

    def _changed(self, paths: frozenset[str], now: float) -> list[Action]:
        return self._restart(self._reason(sorted(paths)), now, paths)

    def _on_restart(self, event: Restart, now: float) -> list[Action]:
        if self.stopping:
            return []
        # By hand means "start over": maybe a library changed on disk, so no standby.
        return self._restart(f" * Restart requested ({event.reason}), restarting", now, cold=True)

    def _restart(
        self, reason: str, now: float, paths: frozenset[str] = frozenset(), cold: bool = False
    ) -> list[Action]:
        if self.stopping:  # e.g. a patch's deadline passing during Ctrl+C
            return []
        if self.patching is not None:  # "rs" or a crash while a patch is pending
            paths |= self._end_patch()
        actions: list[Action] = [Log(reason)]
        for child in self._apps():
            if not child.ready:  # still starting with code that is already stale
                actions += self._drain(child, 0.0, now)
        self.change_at, self.announce = now, None
        for waiting in self._standbys():
            # One not paused yet is activated too: it checks what it read itself (``stale``).
            if not cold and not waiting.stale(paths):
                changed = tuple(sorted(waiting.changed | paths))
                waiting.early = waiting.early or not waiting.armed
                app = self._new(now, "app", parent=waiting.gen)
                return [*actions, Activate(waiting.gen, changed, app=app.gen)]
            actions += self._discard(waiting)  # what it read ahead is stale
        return actions + self._spawn(now)

    def _discard(self, standby: ChildState) -> list[Action]:
        """A standby that will not be activated again. With no app forked from it alive, it is
        killed at once (it holds no request and may still be importing, deaf to the control
        channel: the cores go to the cold start); else it retires (``drain``): it stops being
        a template and exits after its last app, which would die with it."""
        if any(c.parent == standby.gen for c in self.children.values()):
            standby.role = "retired"
            return [Drain(standby.gen, 0.0)]
        standby.kill_at = INF
        return [Signal(standby.gen, signal.SIGKILL)]

    def _on_childmessage(self, event: ChildMessage, now: float) -> list[Action]:
        msg, child = event.message, self.children.get(event.gen)
        if child is None:
            return []
        if msg.type == "watch":
            watch: list[Action] = [Watch(tuple(msg.data.get("paths", ())))]
            modules = tuple(msg.data.get("modules", ()))
            if event.gen == self.gen and modules and modules != self.libraries:
                self.libraries = modules
                watch.append(Remember(modules))
            return watch
        if msg.type == "restart":
            return self._on_restart(Restart("'rs'"), now)
        if msg.type == "patched":
            return self._on_patched(event.gen, msg.data, now)
        if msg.type == "standby":
            child.armed, child.preloaded = True, frozenset(msg.data.get("paths", ()))
            child.listed = frozenset(msg.data.get("listed", ()))
            child.names = frozenset(msg.data.get("names", ()))
            child.at = str(msg.data.get("at", ""))
            if child.role != "standby":
                return []
            actions: list[Action] = []
            if not child.stale():  # it takes over from the older one
                for older in self._standbys():
                    if older.gen < child.gen:
                        actions += self._discard(older)
            actions += self._replace_stale_standby(now)
            current = self.children.get(self.gen)
            ready = current is not None and current.ready
            if child.early and self.reload and ready and not actions:
                # Activated before it paused, it paused where it was going to: maybe before a
                # file no longer edited (``_on_ready`` could not tell yet).
                actions += self._next_standby(now)
            return actions
        if msg.type == "stale":
            return self._on_stale(child, int(msg.data.get("gen", 0)), now)
        if msg.type == "took_over":
            reason = str(msg.data.get("reason", ""))
            return self._on_took_over(child, int(msg.data.get("gen", 0)), reason)
        if msg.type == "draining":
            child.closed = True
            return self._announce(now)
        if msg.type == "load_error":
            child.failed = True
            if msg.data.get("kind") == "not_found" and not self.ever_ready:
                self.exit_code = 2
                return [Log(f"Error: {msg.data.get('error')}"), *self._stop_all(now)]
            failed = Log(f" * App failed to load: {msg.data.get('error')}; waiting for a change")
            return [failed, Watch(tuple(msg.data.get("paths", ())))]
        return self._on_ready(child, msg.data, now) if msg.type == "ready" else []

    def _replace_stale_standby(self, now: float) -> list[Action]:
        """A waiting standby that read a file changed since (a template, data, a patched
        module) would have to be refused at the next restart: start a fresh one now."""
        waiting = self._waiting()
        if waiting is None or not waiting.stale() or now - self.respawned_at < RESPAWN_INTERVAL:
            return []
        current = self.children.get(self.gen)
        if current is None or not current.ready or current.kill_at is not None:
            return []
        self.respawned_at = now
        actions = self._discard(waiting)
        return actions + (self._spawn(now, standby=True) if self._waiting() is None else [])

    def _on_stale(self, standby: ChildState, gen: int, now: float) -> list[Action]:
        """The activated standby had read a changed file: app ``gen`` was never forked, and the
        standby retires by itself (it exits now, or after the apps it forked); start cold."""
        if standby.role == "standby":
            standby.role = "retired"
        if self.children.pop(gen, None) is None or gen != self.gen or self.stopping:
            return []
        return self._spawn(now)

    def _on_took_over(self, standby: ChildState, gen: int, reason: str) -> list[Action]:
        """A fork of the standby would have lacked a thread, or shared a socket, that the
        project started while loading ahead: the standby became app process ``gen`` itself
        (never forked). Said in the debug log only: it is the same at every restart."""
        if self.children.pop(gen, None) is None or self.stopping:
            return []
        standby.role = "app"
        if gen == self.gen:
            self.gen = standby.gen
        text = f" * The standby serves this restart itself (not a fork of it): it holds {reason}"
        return [Log(text, logging.DEBUG)]

    def _on_ready(self, child: ChildState, data: dict[str, object], now: float) -> list[Action]:
        child.ready = True
        if child.gen != self.gen:
            return []
        self.ever_ready = True
        actions: list[Action] = []
        for old in self._apps():
            if old.gen != child.gen:
                actions += self._drain(old, self.graceful_timeout, now)
        if self.change_at is not None:
            if child.failed:
                text = " * Serving the error page (switched in {ms} ms)"
            else:
                detail = f" (import {data['import_ms']} ms)" if "import_ms" in data else ""
                text = " * Restarted in {ms} ms" + detail
            self.announce, self.change_at = (child.gen, text, self.change_at), None
            actions += self._announce(now)
        if self.standby and self.reload:
            actions += self._next_standby(now)
        return actions

    def _next_standby(self, now: float) -> list[Action]:
        """The next restart's head start: a standby if there is none; a new one if the one
        there stopped before a file that is no longer among those edited last (the first
        standby stops before the project's first module): every fork from it would load again
        what lies between that file and the ones you edit now. The old one serves until the
        new one is paused, then retires."""
        standbys = self._standbys()
        if not standbys:
            return self._spawn(now, standby=True)
        waiting = standbys[0]
        recent = {form for path in self.recent for form in path_forms(path)}
        behind = recent and waiting.armed and waiting.at and not path_forms(waiting.at) & recent
        if len(standbys) == 1 and behind:
            return self._spawn(now, standby=True)
        return []

    def _on_childexited(self, event: ChildExited, now: float) -> list[Action]:
        gone = self.children.pop(event.gen, None)
        if gone is not None and any(c.parent == gone.gen for c in self.children.values()):
            # The apps it forked die with it (PR_SET_PDEATHSIG: SIGKILL); an exit it reported
            # came before its own (the monitor reads its channel to the end first).
            orphans = [c.gen for c in self.children.values() if c.parent == gone.gen]
            for gen in orphans:
                self.children.pop(gen)
            if self.patching is not None and self.patching[0] in orphans:
                self.patching = None
            if self.gen in orphans and not self.stopping:
                return self._lost(ChildExited(self.gen, -signal.SIGKILL), now)
        if self.patching is not None and self.patching[0] == event.gen:
            self.patching = None  # it died instead of answering: the crash is reported below
        if self.stopping:
            return [Exit(self.exit_code)] if not self.children else []
        if event.gen != self.gen:
            return self._announce(now)  # an old process gone: maybe the last one accepting
        return self._lost(event, now)

    def _lost(self, event: ChildExited, now: float) -> list[Action]:
        """The newest app process is gone: say how, answer requests with that, keep waiting."""
        self.change_at, self.announce = None, None
        what = f"App {describe_exit(event.returncode)}"
        actions: list[Action] = [Log(f" * {what}; waiting for a change"), Fallback(what)]
        for old in self._apps():  # the newest code is dead: stop serving older code
            actions += self._drain(old, self.graceful_timeout, now)
        if self.queued and self.patching is None:  # saved while it was patching: that change
            queued, self.queued = self.queued, frozenset()
            actions += self._changed(queued, now)
        return actions

    def _on_stop(self, event: Stop, now: float) -> list[Action]:
        if self.stopping:  # a second Ctrl+C: no more waiting
            return [Signal(c.gen, signal.SIGKILL) for c in self.children.values()]
        return self._stop_all(now)

    def _stop_all(self, now: float) -> list[Action]:
        self.stopping = True
        self.patching = self.announce = self.change_at = None  # no patch, restart or line now
        self.queued = frozenset()
        if not self.children:
            return [Exit(self.exit_code)]
        actions: list[Action] = []
        for child in self.children.values():
            child.kill_at = None
            # SIGINT drains a serving process for 1 s; one still starting (it ignores SIGINT
            # until it can drain, see monitor.spawn) just ends on SIGTERM.
            signum = signal.SIGINT if child.ready else signal.SIGTERM
            actions += self._stop(child, signum, 1.0, now)
        return actions

    def _on_tick(self, event: Tick, now: float) -> list[Action]:
        actions: list[Action] = []
        if self.patching is not None and now >= self.patching[2] + PATCH_TIMEOUT:
            paths = self._end_patch()
            actions += [Log(" * Not patched in place: no answer"), *self._changed(paths, now)]
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
