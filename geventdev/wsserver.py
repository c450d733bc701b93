"""The child's server with websockets in mind, chosen by ``server.make_server``.

A restart must not wait ``--graceful-timeout`` for open websockets: on drain they are shut down
at once, and clients (browsers, Socket.IO) reconnect to the new code. With gevent-websocket
importable, the handler also routes engine.io's upgrades to it (see ``websockets``).
"""

from __future__ import annotations

from typing import Any

from .server import DevHandler, DevServer
from .websockets import gevent_websocket_handler, has_gevent_websocket, is_websocket


class WebSocketDevHandler(DevHandler):
    """DevHandler that lets the server find (and on drain, close) its open websockets."""

    server: WebSocketDevServer

    def run_application(self) -> None:
        if not is_websocket(self.environ):
            super().run_application()
            return
        self.server.websockets.add(self)
        try:
            super().run_application()
        finally:
            self.server.websockets.discard(self)


class WebSocketDevServer(DevServer):
    """DevServer whose drain closes websockets first instead of waiting them out."""

    handler_class = WebSocketDevHandler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.websockets: set[DevHandler] = set()

    def drain(self, timeout: float) -> None:
        for handler in list(self.websockets):
            handler.say_restarting()  # close code 1012 "service restart": reconnect now
            handler.close_idle()
        super().drain(timeout)


def server_class() -> type[DevServer]:
    """The server ``make_server`` builds: with gevent-websocket when it is importable."""
    if not has_gevent_websocket():
        return WebSocketDevServer
    handler = gevent_websocket_handler(WebSocketDevHandler)
    return type("GeventWebSocketDevServer", (WebSocketDevServer,), {"handler_class": handler})
