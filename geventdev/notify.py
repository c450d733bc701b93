"""In the app process: messages between the app's helpers and the monitor.

The monitor sends ``changed`` (templates, static files, anything that is not code) to the app
process instead of restarting it; the child publishes the paths here, and subscribers (live
reload in the browser) react. The other way, helpers such as the debugger guard report state
the monitor keeps across restarts (``tell_monitor``). Import-light: no gevent, no Flask.
"""

from __future__ import annotations

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
    for listener in list(_listeners):
        listener(paths)


def connect(sender: Sender) -> None:
    """Set by the child: how a message reaches the monitor (its control channel)."""
    _sender[:] = [sender]


def tell_monitor(kind: str, data: dict[str, Any]) -> None:
    """Send a control message to the monitor (nothing happens outside a geventdev child)."""
    for sender in _sender:
        sender(kind, data)
