"""The events the monitor feeds its ``Plan`` and the actions the plan answers with. Pure data."""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import Message


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
    """Start an app process; a ``standby`` one imports libraries, then waits for ``Activate``."""

    gen: int
    standby: bool = False


@dataclass(frozen=True)
class Activate:
    """Tell a warm standby to load the app and serve now."""

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
class Notify:
    """Tell the serving app process about files that changed without needing a restart."""

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


Action = Spawn | Activate | Signal | Log | Watch | Notify | Fallback | Exit
