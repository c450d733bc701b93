"""Flask ``async def`` views under gevent: each coroutine runs in a real OS thread.

Why: Flask runs an async view through asgiref's ``AsyncToSync``, which refuses to start when an
event loop already runs in the same thread. After ``monkey.patch_all()`` the "threads" asgiref
uses are greenlets sharing one OS thread, so concurrent async views fail with ``You cannot use
AsyncToSync in the same thread as an async event loop`` (pallets/flask#5881, django/asgiref#443;
1 of 50 concurrent requests succeeded here). Flask documents ``async_to_sync`` as the method to
override, and that is the whole fix: ``asyncio.run(coro)`` in a native thread from a gevent
``ThreadPool``, inside a copy of the request greenlet's contextvars (so ``request``, ``g`` and
``current_app`` are that request's). The greenlet waits cooperatively; other requests keep running.

Pool size: each running async view holds one OS thread for as long as it runs. At most
``GEVENTDEV_ASYNC_THREADS`` (default 50) run at once; more wait their turn without blocking sync
views. The pool is our own, not ``hub.threadpool``, so slow async views never queue DNS lookups
(gevent's default resolver runs on the hub's pool of 10).

Production (``gunicorn -k gevent``): call ``geventdev.asyncviews.enable(app)`` in the app or its
factory. It is a no-op until the process is monkey-patched (checked on each call, so it is also
right under ``--preload``, ``flask run`` and tests), and needs no asgiref.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
from collections.abc import Callable, Coroutine
from typing import Any

ENV_THREADS = "GEVENTDEV_ASYNC_THREADS"
DEFAULT_THREADS = 50
#: Set on an app once enabled, so a second ``enable`` (geventdev after the user's) is a no-op.
MARKER = "_geventdev_async_threads"

_pools: dict[tuple[int, int], Any] = {}


def thread_count() -> int:
    """The pool size: ``GEVENTDEV_ASYNC_THREADS`` if set to a positive integer, else 50."""
    try:
        value = int(os.environ.get(ENV_THREADS, DEFAULT_THREADS))
    except ValueError:
        return DEFAULT_THREADS
    return value if value > 0 else DEFAULT_THREADS


def _pool(threads: int) -> Any:
    """One pool per process and hub, made on first use (after any fork, e.g. gunicorn's)."""
    import gevent
    from gevent.threadpool import ThreadPool

    hub = gevent.get_hub()
    key = (os.getpid(), id(hub))
    pool = _pools.get(key)
    if pool is None:
        pool = _pools[key] = ThreadPool(threads, hub=hub)
    return pool


def enable(app: Any, threads: int | None = None) -> Any:
    """Make ``app``'s async views work under gevent; returns ``app``.

    An app that overrides ``async_to_sync`` itself keeps its own.
    """
    from flask import Flask

    if getattr(app, MARKER, None) or type(app).async_to_sync is not Flask.async_to_sync:
        return app
    size = threads or thread_count()
    fallback = app.async_to_sync  # Flask's own (asgiref), right when nothing is patched

    def async_to_sync(
        func: Callable[..., Coroutine[Any, Any, Any]],
    ) -> Callable[..., Any]:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            from gevent import monkey

            if not monkey.is_module_patched("threading"):
                return fallback(func)(*args, **kwargs)
            context = contextvars.copy_context()
            return _pool(size).apply(context.run, (asyncio.run, func(*args, **kwargs)))

        return run

    app.async_to_sync = async_to_sync
    setattr(app, MARKER, size)
    return app


def enabled_threads(app: Any) -> int | None:
    """The pool size if ``enable`` took effect on ``app``, else None."""
    value = getattr(app, MARKER, None)
    return value if isinstance(value, int) else None


def async_views(app: Any) -> list[str]:
    """Endpoints whose view (function, or class-based view method) is ``async def``."""
    found = []
    for endpoint, view in app.view_functions.items():
        candidates = [view]
        view_class = getattr(view, "view_class", None)
        if view_class is not None:
            # A plain ``View`` leaves ``methods`` None (Flask's basic example): GET only.
            methods = getattr(view_class, "methods", None) or ()
            names = ["dispatch_request", *(m.lower() for m in methods)]
            candidates += [getattr(view_class, n, None) for n in names]
        if any(inspect.iscoroutinefunction(c) for c in candidates if c is not None):
            found.append(endpoint)
    return found


def notice(app: Any) -> str | None:
    """The one-line start-up notice, when the app has async views."""
    views = async_views(app)
    if not views:
        return None
    shown = ", ".join(views[:5]) + (", ..." if len(views) > 5 else "")
    threads = enabled_threads(app)
    if threads is None:
        return f" * Async views ({len(views)}: {shown}) use the app's own async_to_sync"
    return (
        f" * Async views ({len(views)}: {shown}) run in OS threads, at most {threads} at once"
        f" ({ENV_THREADS}); under gunicorn call geventdev.asyncviews.enable(app)"
    )
