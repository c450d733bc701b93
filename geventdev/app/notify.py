"""In the app process: messages between the app's helpers and the monitor.

The monitor sends ``changed`` (templates, static files, anything that is not code) to the app
process instead of restarting it; the child publishes the paths here, and subscribers (live
reload in the browser) react. The other way, helpers such as the debugger guard report state
the monitor keeps across restarts (``tell_monitor``). Import-light: no gevent, no Flask.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

Listener = Callable[[list[str]], None]
Sender = Callable[[str, dict[str, Any]], None]
_listeners: list[Listener] = []
_sender: list[Sender] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener(paths)`` on every refresh-only change; returns an unsubscribe function."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def publish(paths: list[str]) -> None:
    """Call every listener; one that fails is reported and the others still run (this runs on
    the child's control-channel greenlet, which must not die: it is how the monitor reaches us)."""
    for listener in list(_listeners):
        try:
            listener(paths)
        except Exception:  # noqa: BLE001 - a live-reload hiccup must not cut us off
            traceback.print_exc()


def connect(sender: Sender) -> None:
    """Set by the child: how a message reaches the monitor (its control channel)."""
    _sender[:] = [sender]


def tell_monitor(kind: str, data: dict[str, Any]) -> None:
    """Send a control message to the monitor (nothing happens outside a geventdev child)."""
    for sender in _sender:
        sender(kind, data)


# The debugger's PIN lockout, shared by every app process through the monitor ------------------
_pin_listeners: list[Callable[[int, bool], None]] = []
_draining: list[bool] = [False]


def on_pin_failures(listener: Callable[[int, bool], None]) -> None:
    """Call ``listener(count, reset)`` whenever the monitor shares the count across app
    processes (``reset``: a right PIN was entered somewhere)."""
    _pin_listeners.append(listener)


def pin_failures(count: int, reset: bool = False) -> None:
    """From the monitor: wrong PINs so far across every app process of this server run."""
    for listener in list(_pin_listeners):
        listener(count, reset)


def set_draining() -> None:
    """This process stops serving (a restart or a stop): it evaluates no more PINs."""
    _draining[0] = True


def draining() -> bool:
    return _draining[0]
