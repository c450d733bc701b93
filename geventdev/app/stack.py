"""Turn a loaded app into what the child serves: debug settings, template reload, the debugger.

Also where the child arms its gevent-specific help, once the app is loaded (so slow imports at
start are not reported as blocking calls): the async-view shim, start-up warnings, and in debug
the blocking-call alarm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from geventdev import asyncviews, logs
from geventdev.app import diagnose, django_support, notify
from geventdev.app.blocking import BlockingAlarm, threshold_from_env
from geventdev.app.loader import LoadedApp
from geventdev.config import Config
from geventdev.livereload import middleware as livereload
from geventdev.livereload import sources
from geventdev.wsgi import WSGIApp


def prepare_flask(app: Any, config: Config) -> None:
    """Debug on means exceptions propagate to the debugger and Jinja re-reads changed templates.

    Setting ``app.debug`` also sets ``jinja_env.auto_reload`` unless the app chose
    ``TEMPLATES_AUTO_RELOAD`` itself, which we respect. Async views get the gevent shim
    (``asyncviews``), the same one-liner production calls.
    """
    app.debug = config.debug
    if config.debug and app.config.get("TEMPLATES_AUTO_RELOAD") is None:
        app.jinja_env.auto_reload = True
    asyncviews.enable(app)
    notice = asyncviews.notice(app)
    if notice:
        logs.say(notice)


def debugged(app: WSGIApp, config: Config) -> WSGIApp:
    """werkzeug's debugger, loopback-only and with a lockout that survives reloads."""
    from geventdev.app.debugger import GuardedDebugger

    return GuardedDebugger(app, config)


def socketio_middleware(app: Any) -> Any:
    """Flask-SocketIO's middleware on this app, if any (``app.extensions['socketio']``)."""
    extensions = getattr(app, "extensions", None)
    socketio = extensions.get("socketio") if isinstance(extensions, dict) else None
    return getattr(socketio, "sockio_mw", None)


def wrap_app(loaded: LoadedApp | None, app: WSGIApp, config: Config) -> WSGIApp:
    """Apply per-framework settings, then the debugger: outermost, or for Flask-SocketIO between
    its middleware and the app, as ``socketio.run()`` does (so Socket.IO traffic bypasses it).
    In debug, the blocking-call alarm's request recorder wraps everything."""
    for line in diagnose.startup_warnings():
        logs.say(line, logging.WARNING)
    sockio_mw = None
    if loaded is not None and loaded.is_flask:
        prepare_flask(loaded.app, config)
        sockio_mw = socketio_middleware(loaded.app)
    elif loaded is not None and django_support.is_django(loaded.app):
        app = django_support.prepare_django(app)  # static files and template resets, as runserver
    if config.use_debugger and sockio_mw is not None:
        sockio_mw.wsgi_app = debugged(sockio_mw.wsgi_app, config)
    elif config.use_debugger:
        app = debugged(app, config)
    if config.use_livereload:  # around the debugger, so its error pages get the script too
        flask_app = loaded.app if loaded is not None and loaded.is_flask else None
        use = sources.tracker()  # from now on: what serving reads and writes, not the imports
        use.start()
        reloader = livereload.LiveReload(
            app, flask_app, allow_remote=config.debugger_remote, use=use
        )
        notify.subscribe(reloader.changed)  # the monitor's no-restart changes
        app = reloader
    threshold = threshold_from_env() if config.debug else None
    if threshold is None:
        return app
    alarm = BlockingAlarm(threshold)
    STARTERS.append(alarm.start)  # a thread: started by the process that serves
    return alarm.wrap(app)


#: What the serving process starts once it serves (``start_threads``), not the loading one: a
#: loaded app kept to fork workers from (``app.pristine``) must hold no thread.
STARTERS: list[Callable[[], None]] = []


def start_threads() -> None:
    """Start what ``wrap_app`` left for the serving process (the blocking alarm's thread)."""
    while STARTERS:
        STARTERS.pop(0)()
