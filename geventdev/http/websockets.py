"""Which handler serves a websocket: the rule shared by geventdev and its gunicorn worker.

- Plain pywsgi serves websockets already: simple-websocket (flask-sock, and engine.io when
  gevent-websocket is absent) takes the raw socket from the environ.
- If ``geventwebsocket`` is importable, engine.io *requires* ``environ['wsgi.websocket']``,
  which only gevent-websocket's ``WebSocketHandler`` provides ("The gevent-websocket server is not
  configured appropriately"). But that handler upgrades *every* websocket request before the app
  runs, which breaks flask-sock beside it (miguelgrinberg/flask-sock#100). So our handler hands
  only engine.io's requests (``EIO=...&transport=websocket``) to it; everything else stays plain.
  ``geventdev.workers.GeventWebSocketWorker`` is the same rule for gunicorn.

No gevent, no server here: gunicorn's master imports this through ``geventdev.workers``.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import parse_qs


def has_gevent_websocket() -> bool:
    """What engine.io decides by, at its import: can ``geventwebsocket`` be imported."""
    try:
        importlib.import_module("geventwebsocket.handler")
    except ImportError:
        return False
    return True


def is_websocket(environ: dict[str, Any]) -> bool:
    return "websocket" in str(environ.get("HTTP_UPGRADE", "")).lower()


def is_engineio_websocket(environ: dict[str, Any]) -> bool:
    """engine.io's websocket transport (Socket.IO): the only requests gevent-websocket upgrades."""
    if not is_websocket(environ):
        return False
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    return "EIO" in query and query.get("transport") == ["websocket"]


def gevent_websocket_handler(base: type[Any]) -> type[Any]:
    """``base`` (a pywsgi handler) plus gevent-websocket, for engine.io's requests only."""
    from geventwebsocket.handler import WebSocketHandler  # type: ignore[import-not-found,import-untyped,unused-ignore]

    class EngineIOWebSocketHandler(WebSocketHandler, base):  # type: ignore[misc]
        # WebSocketHandler.log_request skips upgrades and logs elsewhere: keep base's log line.
        log_request = base.log_request

        def run_application(self) -> Any:
            if not is_engineio_websocket(self.environ):
                return base.run_application(self)
            return super().run_application()

    return EngineIOWebSocketHandler
