"""In the app process: who wants to hear about files that changed without a restart.

The monitor sends ``changed`` (templates, static files, anything that is not code) to the app
process instead of restarting it; the child publishes the paths here, and subscribers (live
reload in the browser) react. Import-light: no gevent, no Flask.
"""

from __future__ import annotations

from collections.abc import Callable

Listener = Callable[[list[str]], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener(paths)`` on every refresh-only change; returns an unsubscribe function."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def publish(paths: list[str]) -> None:
    for listener in list(_listeners):
        listener(paths)
