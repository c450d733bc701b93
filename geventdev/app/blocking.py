"""The debug-time blocking-call alarm, on gevent's own monitor thread.

gevent's monitor thread (``GEVENT_MONITOR_THREAD_ENABLE``) notices when the hub has not run for
``max_blocking_time`` and emits ``gevent.events.EventLoopBlocked`` naming the greenlet that held
it. gevent's own report is a page of every thread's stack for *each* occurrence, so we turn that
off (``print_blocking_reports``, gevent >= 25.4.1) and print, once per cause, one line naming
the request, its route and the app frame that blocked, followed by that frame's stack. The same
monitor in production: ``GEVENT_MONITOR_THREAD_ENABLE=1 gunicorn -k gevent ...`` (gevent's
full reports).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import FrameType
from typing import Any

from geventdev import logs
from geventdev.paths import OWN_DIR, library_dirs
from geventdev.wsgi import WSGIApp

#: Seconds the hub may stay blocked before a report; gevent's default (0.1) flags a first Jinja
#: compile. A block is certain to be seen once it lasts two periods of the monitor thread.
DEFAULT_THRESHOLD = 0.2
STACK_LIMIT = 8
FIRST_REQUEST = (
    "   | This was a first request since the app (re)started: one-time work (imports, Jinja"
    " compiling templates, migrations) blocks once there; if it does not recur, it is harmless.\n"
)
#: Not the user's code: the same line the watcher and the standby draw (interpreter trees, us).
_NOT_APP = (*library_dirs(), OWN_DIR)


def threshold_from_env(environ: Mapping[str, str] = os.environ) -> float | None:
    """gevent's own variables win: ``GEVENT_MONITOR_THREAD_ENABLE=0`` turns the alarm off and
    ``GEVENT_MAX_BLOCKING_TIME`` sets the threshold; None means off."""
    if environ.get("GEVENT_MONITOR_THREAD_ENABLE", "").strip().lower() in (
        "0",
        "false",
        "no",
        "off",
    ):
        return None
    try:
        value = float(environ.get("GEVENT_MAX_BLOCKING_TIME", DEFAULT_THRESHOLD))
    except ValueError:
        return DEFAULT_THRESHOLD
    return value if value > 0 else DEFAULT_THRESHOLD


def is_app_file(path: str) -> bool:
    real = os.path.realpath(path)
    return os.path.isfile(real) and not real.startswith(_NOT_APP)


def app_frame(frame: FrameType | None) -> FrameType | None:
    """The innermost frame in the user's code (not the stdlib, site-packages or geventdev)."""
    while frame is not None:
        if is_app_file(frame.f_code.co_filename):
            return frame
        frame = frame.f_back
    return None


def app_stack(frame: FrameType | None) -> list[str]:
    """``frame``'s stack from the outermost app frame inward (the request machinery above it is
    noise), at most ``STACK_LIMIT`` frames."""
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    app_frames = [i for i, f in enumerate(frames) if is_app_file(f.f_code.co_filename)]
    depth = min(app_frames[-1] + 1 if app_frames else len(frames), STACK_LIMIT)
    return traceback.format_stack(frames[0], limit=depth) if frames else []


def shown_path(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


class MutedThread:
    """A hub's ``exception_stream`` that writes to ``sys.stderr``, except from one OS thread."""

    def __init__(self, muted_ident: int) -> None:
        from gevent import monkey

        self.muted_ident = muted_ident
        # the OS thread's ident: once patched, threading.get_ident names greenlets
        self.get_ident: Callable[[], int] = monkey.get_original("_thread", "get_ident")

    def write(self, text: str) -> int:
        if self.get_ident() == self.muted_ident:
            return len(text)
        return sys.stderr.write(text)

    def flush(self) -> None:
        if self.get_ident() != self.muted_ident:
            sys.stderr.flush()


class BlockingAlarm:
    """Records which request each greenlet serves and reports blocked hubs, once per cause.

    A cause is the route (or path) that blocked, or the app function that blocked: a report is
    made only when neither was reported before, so a first request's database migrations (ten
    blocking calls in ten files) are one report, and a helper that blocks from several routes is
    one report too. Requests that began before any request finished since the app (re)started
    are marked as such: one-time work (imports, Jinja compiling templates) blocks there once.
    """

    def __init__(self, threshold: float, log: Callable[[str], None] | None = None) -> None:
        self.threshold = threshold
        self.log = log or (lambda text: logs.say(text, logging.WARNING))
        #: greenlet -> (its request's environ, whether it is a first request)
        self.requests: weakref.WeakKeyDictionary[Any, tuple[dict[str, Any], bool]] = (
            weakref.WeakKeyDictionary()
        )
        self.seen: set[tuple[str, ...]] = set()  # causes already reported
        self.finished = False  # a request has finished since this process started serving
        self.hub: Any = None

    def wrap(self, app: WSGIApp) -> WSGIApp:
        """Outermost middleware: remember the request of the greenlet that serves it."""
        from gevent import getcurrent

        def record(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            self.requests[getcurrent()] = (environ, not self.finished)
            try:
                return app(environ, start_response)
            finally:
                self.finished = True

        return record

    def start(self) -> None:
        """Start gevent's monitor thread for this (the serving) hub and subscribe to its events.

        ``monitor_thread`` is switched on only while this hub's thread starts: left on, every hub
        made later (one per async-view thread) would get a monitor of its own.
        """
        import gevent
        from gevent import events

        self.hub = gevent.get_hub()
        gevent.config.max_blocking_time = self.threshold
        quiet = "print_blocking_reports" in getattr(gevent.config, "settings", {})  # >= 25.4.1
        if quiet:
            gevent.config.print_blocking_reports = False
        events.subscribers.append(self.on_event)
        enabled = gevent.config.monitor_thread
        gevent.config.monitor_thread = True
        with warnings.catch_warnings(), plugins_looked_up():
            # memory monitoring (needs psutil) is not ours to arm
            warnings.filterwarnings("ignore", "Unable to monitor memory usage")
            monitor = self.hub.start_periodic_monitoring_thread()
        gevent.config.monitor_thread = enabled
        if not quiet and monitor is not None:
            # Older gevent prints its page-long report for every block, from the monitor thread,
            # to the hub's exception stream: drop what that thread writes there.
            self.hub.exception_stream = MutedThread(monitor.monitor_thread_ident)

    def on_event(self, event: object) -> None:
        """A gevent event subscriber; runs in the monitor thread while the hub is blocked."""
        from gevent.events import EventLoopBlocked

        # (gevent < 25.4.1 has no ``event.hub``: only this hub has a monitor thread then.)
        if (
            not isinstance(event, EventLoopBlocked)
            or getattr(event, "hub", self.hub) is not self.hub
        ):
            return
        # gevent formats a full report before telling us, which under load can outlast the
        # block: a greenlet that ended or waits (a saved frame) no longer runs, and the stack
        # sampled below would be another request's, reported under this one's name. Skip: a
        # block that goes on is seen again, as its own greenlet.
        blocker = event.greenlet
        if getattr(blocker, "dead", False) or getattr(blocker, "gr_frame", None) is not None:
            return
        frame = sys._current_frames().get(self.hub.thread_ident)
        where = app_frame(frame)
        if where is None or self.hub_is_running(frame):
            # No app code on the stack: the block ended between gevent's check and ours (the
            # greenlet went on into pywsgi, or the hub runs again), or it is not the app's doing.
            return
        environ, first = self.requests.get(event.greenlet) or (None, False)
        text = self.report(environ, frame, where, str(event.greenlet), first)
        if text:
            self.log(text)

    def hub_is_running(self, frame: FrameType | None) -> bool:
        run = getattr(getattr(type(self.hub), "run", None), "__code__", None)
        while frame is not None:
            if frame.f_code is run:
                return True
            frame = frame.f_back
        return False

    def report(
        self,
        environ: dict[str, Any] | None,
        frame: FrameType | None,
        where: FrameType,
        who: str,
        first: bool = False,
    ) -> str:
        """The report, or "" if its cause was reported already."""
        code = where.f_code
        causes = {("function", code.co_filename, code.co_name)}  # the app function that blocked
        if environ is not None:
            method, path = environ.get("REQUEST_METHOD", "?"), environ.get("PATH_INFO", "/")
            # Flask's request, while it is current (Flask clears it when the request ends)
            rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
            subject = f"{method} {path}" + (f" (route {rule.rule})" if rule is not None else "")
            causes.add(("request", method, rule.rule if rule is not None else path))
        else:
            subject = f"greenlet {who} (not a request)"
        if causes & self.seen:
            return ""
        self.seen |= causes
        place = f"{shown_path(code.co_filename)}:{where.f_lineno} in {code.co_name}()"
        stack = app_stack(frame)
        lines = "".join(
            f"   | {line}\n" for frame_text in stack for line in frame_text.splitlines()
        )
        return (
            f" * Blocking call: {subject} blocked the event loop for over {self.threshold:g} s"
            f" at {place}; every other request waited. Reported once.\n{lines}"
            "   | Make it cooperative (a gevent-friendly driver, gevent.sleep(0) in long loops)"
            " or run it with gevent.get_hub().threadpool.apply(func, args).\n"
            + (FIRST_REQUEST if first else "")
        )


#: gevent's plugins for "a monitor thread started", looked up by a standby (``look_up_plugins``).
_PLUGINS: list[Any] = []


def look_up_plugins() -> None:
    """In a standby: find the installed plugins gevent calls when a monitor thread starts, which
    it looks up in every distribution's entry points at each start (~10 ms: a quarter of a small
    app's restart). The app processes forked from the standby reuse the answer."""
    from importlib import metadata

    from gevent.events import PeriodicMonitorThreadStartedEvent

    _PLUGINS[:] = [metadata.entry_points(group=PeriodicMonitorThreadStartedEvent.ENTRY_POINT_NAME)]


@contextlib.contextmanager
def plugins_looked_up() -> Iterator[None]:
    """While gevent starts the monitor thread, its entry-point lookup for that event answers
    with what the standby found (the same query, a moment earlier: a plugin installed since is
    seen at the next cold start, as by a cold start)."""
    from importlib import metadata

    from gevent.events import PeriodicMonitorThreadStartedEvent

    if not _PLUGINS:
        yield
        return
    original, found = metadata.entry_points, _PLUGINS[0]
    group = PeriodicMonitorThreadStartedEvent.ENTRY_POINT_NAME

    def entry_points(**params: Any) -> Any:
        return found if params == {"group": group} else original(**params)

    metadata.entry_points = entry_points
    try:
        yield
    finally:
        metadata.entry_points = original
