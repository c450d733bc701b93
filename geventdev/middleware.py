"""Turn a loaded app into what the child serves: debug settings, template reload, the debugger."""

from __future__ import annotations

from typing import Any

from .config import Config
from .loader import LoadedApp, WSGIApp

#: werkzeug's defaults plus what run_simple adds for a loopback bind.
LOCAL_HOSTS = (".localhost", "127.0.0.1", "localhost", "[::1]")


def prepare_flask(app: Any, config: Config) -> None:
    """Debug on means exceptions propagate to the debugger and Jinja re-reads changed templates.

    Setting ``app.debug`` also sets ``jinja_env.auto_reload`` unless the app chose
    ``TEMPLATES_AUTO_RELOAD`` itself, which we respect.
    """
    app.debug = config.debug
    if config.debug and app.config.get("TEMPLATES_AUTO_RELOAD") is None:
        app.jinja_env.auto_reload = True


def wrap_app(loaded: LoadedApp | None, app: WSGIApp, config: Config) -> WSGIApp:
    """Apply per-framework settings, then werkzeug's ``DebuggedApplication`` outermost."""
    if loaded is not None and loaded.is_flask:
        prepare_flask(loaded.app, config)
    if not config.use_debugger:
        return app
    from werkzeug.debug import DebuggedApplication

    debugged = DebuggedApplication(app, evalex=True)
    if config.host not in ("0.0.0.0", "::", ""):
        hosts = {config.host, f"[{config.host}]" if ":" in config.host else config.host}
        debugged.trusted_hosts.extend(sorted(h for h in hosts if h not in LOCAL_HOSTS))
    debugged.trusted_hosts.extend(h for h in LOCAL_HOSTS if h not in debugged.trusted_hosts)
    return debugged
