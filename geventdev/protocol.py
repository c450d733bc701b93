"""Everything that crosses the monitor/child boundary: env var names and control messages.

The monitor hands each child two inherited file descriptors (``pass_fds``): the listening socket
and one end of a ``socketpair`` used as the control channel. Messages on it are JSON lines both
ways: the child reports (ready, watch, load_error, standby, restart, pin_failures, draining,
debug_pin, patched, stale, forked, exited, took_over), the monitor sends ``load`` to a standby,
``changed`` paths, ``drain``, ``pin_failures`` and ``patch`` paths; the channel hitting EOF tells
the child that the monitor is gone. An app process a standby forks gets a channel of its own,
passed with the ``load`` message (``SCM_RIGHTS``). Signals are left to the user (and to the app,
which may install its own SIGTERM handler): a restart never sends one. Stdlib only: both sides
import this module, the child before gevent has patched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

#: What a user types (and Enter) in the terminal to restart by hand, as with nodemon.
RESTART_COMMAND = "rs"
#: URL paths geventdev's own endpoints answer (live reload); never the app's, never logged.
RESERVED_PREFIX = "/__geventdev__/"
#: Modules that mean a pydevd-based debugger (VS Code's debugpy, PyCharm) is loaded.
DEBUGGER_MODULES = ("pydevd", "debugpy", "_pydevd_bundle")

ENV_LISTEN_FD = "GEVENTDEV_LISTEN_FD"
ENV_CONTROL_FD = "GEVENTDEV_CONTROL_FD"
ENV_CONFIG = "GEVENTDEV_CONFIG"
ENV_MONITOR_PID = "GEVENTDEV_MONITOR_PID"
#: Set for a warm standby: import libraries, report ``standby``, then wait for ``load``.
#: (Not GEVENTDEV_STANDBY: that is the --standby option's environment variable.)
ENV_STANDBY = "GEVENTDEV_WARM_STANDBY"
#: Space-separated module names a standby imports ahead (what the last app process used).
ENV_PRELOAD = "GEVENTDEV_PRELOAD"
#: JSON list of the files changed most recently: a standby loads the project up to the first
#: of them it meets (``app.gate``).
ENV_HOT = "GEVENTDEV_HOT_FILES"
#: Stays set in the child for the app to see (``geventdev.is_running_from_reloader``).
ENV_CHILD = "GEVENTDEV_CHILD"

#: Failed debugger PIN attempts so far, across app processes (read by ``debugger.py``).
ENV_PIN_FAILURES = "GEVENTDEV_PIN_FAILURES"
#: "PIN|cookie name" of the server run's first debugger: every later app process (error pages
#: too) uses the same, so a PIN entered once keeps working (read by ``debugger.py``).
ENV_DEBUG_PIN = "GEVENTDEV_DEBUG_PIN"
#: Set for the app: werkzeug prints the debugger PIN only when this is "true", and the idiom
#: ``if os.environ.get("WERKZEUG_RUN_MAIN") == "true": start_scheduler()`` keeps working.
ENV_WERKZEUG_RUN_MAIN = "WERKZEUG_RUN_MAIN"
#: Makes a stray ``app.run()`` at module level a no-op, as under ``flask run``.
ENV_FLASK_RUN_FROM_CLI = "FLASK_RUN_FROM_CLI"

MessageType = Literal[
    "ready",
    "load_error",
    "watch",
    "restart",
    "standby",
    "load",
    "changed",
    "pin_failures",
    "drain",
    "draining",
    "debug_pin",
    "patch",
    "patched",
    "stale",
    "forked",
    "exited",
    "took_over",
]
#: ``not_found``: the target names no module or no app (a usage error: the monitor exits at the
#: first start). ``exception``: the user's code raised while loading (served as an error page).
LoadErrorKind = Literal["not_found", "exception"]


MESSAGE_TYPES = frozenset(MessageType.__args__)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Message:
    """One control message from a child.

    ``ready``: serving; ``pid``, ``import_ms`` (loading the app). ``load_error``: ``kind``,
    ``error`` (one line) and ``paths`` (files in the traceback, to keep watching). ``watch``:
    ``paths`` of imported modules (and ``modules``: library module names, for the standby).
    ``restart``: the user typed "rs" in the terminal. ``standby``: a warm standby is paused in
    its load (``app.gate``): ``paths`` of the project-side files it read so far, ``listed``
    project directories it searched and ``names``, their importable entries then, ``at`` the
    file it stopped before ("" at the end of the load). The monitor sends ``load`` (to a
    standby: fork app process ``gen``, whose control channel rides along, to load the rest and
    serve; ``paths`` changed since the standby started, ``pin_failures``); a standby that a
    change in ``paths`` hit answers ``stale`` (``gen``: never forked) and retires (the monitor
    starts a cold process instead); else it reports ``forked`` (``gen``, ``pid``) and, once
    that process has ended, ``exited`` (``gen``, ``returncode`` as ``Popen`` gives it); or,
    when a fork of it would differ from a cold start (a thread, a socket the project opened),
    ``took_over`` (``gen``: never forked): the standby is the new app process itself. A
    ``drain`` retires a standby: it exits after the app processes it forked. And ``changed``
    (``paths`` changed that need no restart: templates, static files; for live reload).
    ``pin_failures``: the debugger's failed PIN count (``count``), kept across restarts.
    The monitor sends ``drain`` (``timeout``: stop accepting, finish the requests in flight
    within that many seconds, exit; a standby or a process still loading exits at once); the
    child answers ``draining`` once it no longer accepts connections (also when a signal from
    the user started the drain).
    ``patch`` (monitor to app): try to apply the edit of ``paths`` in place (``app.patch``);
    the app answers ``patched``: ``ok`` and ``log`` (the line to print, or why it could not).
    """

    type: MessageType
    data: dict[str, Any]

    def encode(self) -> bytes:
        return json.dumps({"type": self.type, **self.data}).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Message:
        data = json.loads(line)
        kind = data.pop("type")
        if kind not in MESSAGE_TYPES:
            raise ValueError(f"unknown control message {kind!r}")
        return cls(kind, data)

    @classmethod
    def parse(cls, line: bytes) -> Message | None:
        """``decode``, or None for a line that is not a message (not a JSON object with a
        known "type")."""
        try:
            return cls.decode(line)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def iter_messages(stream: BinaryIO) -> Iterator[Message]:
    """Yield messages until EOF; a malformed line ends the stream (the child is broken)."""
    for line in stream:
        message = Message.parse(line)
        if message is None:
            return
        yield message


@dataclass(frozen=True)
class Handoff:
    """What the monitor hands to a child through its environment."""

    listen_fd: int
    control_fd: int
    config_json: str
    monitor_pid: int
    standby: bool = False
    preload: tuple[str, ...] = ()
    hot: tuple[str, ...] = ()

    def to_environ(self) -> dict[str, str]:
        return {
            ENV_LISTEN_FD: str(self.listen_fd),
            ENV_CONTROL_FD: str(self.control_fd),
            ENV_CONFIG: self.config_json,
            ENV_MONITOR_PID: str(self.monitor_pid),
            ENV_STANDBY: "1" if self.standby else "",
            ENV_PRELOAD: " ".join(self.preload),
            ENV_HOT: json.dumps(list(self.hot)),
            ENV_CHILD: "1",
            ENV_WERKZEUG_RUN_MAIN: "true",
            ENV_FLASK_RUN_FROM_CLI: "true",
            "PYTHONUNBUFFERED": "1",
        }

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] = os.environ) -> Handoff:
        """Read and remove the handoff, so the app's own subprocesses never see stale fds."""
        try:
            return cls(
                listen_fd=int(environ.pop(ENV_LISTEN_FD)),
                control_fd=int(environ.pop(ENV_CONTROL_FD)),
                config_json=environ.pop(ENV_CONFIG),
                monitor_pid=int(environ.pop(ENV_MONITOR_PID)),
                standby=environ.pop(ENV_STANDBY, "") == "1",
                preload=tuple(environ.pop(ENV_PRELOAD, "").split()),
                hot=tuple(json.loads(environ.pop(ENV_HOT, "") or "[]")),
            )
        except KeyError as exc:
            raise SystemExit(
                f"geventdev.app is started by the geventdev monitor, not by hand ({exc} unset)."
            ) from None


def is_restart_command(data: bytes) -> bool:
    """Whether a line read from the terminal asks for a restart (``rs``)."""
    return RESTART_COMMAND in data.decode(errors="replace").split()
