"""WebSockets through geventdev: flask-sock and Flask-SocketIO, with and without gevent-websocket.

"absent" hides an installed gevent-websocket behind a package that fails to import (first on
PYTHONPATH), which is what engine.io and geventdev decide by; "present" needs it installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import time
from pathlib import Path

import pytest
import simple_websocket
import socketio
from conftest import EXAMPLES, echo_once, gws_env, wait_until, ws_url

GWS = [
    "absent",
    pytest.param(
        "present",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("geventwebsocket") is None,
            reason="gevent-websocket not installed",
        ),
    ),
]


@pytest.mark.parametrize("gws", GWS)
def test_flask_sock_echo_and_reconnect_after_reload(
    project: Path, dev_server, tmp_path: Path, gws: str
) -> None:
    app = project / "app.py"
    shutil.copy(EXAMPLES / "websocket_sock" / "app.py", app)
    server = dev_server("app.py", **gws_env(gws, tmp_path))
    url = ws_url(server.url, "/echo")
    client = simple_websocket.Client.connect(url)
    try:
        client.send("hi")
        assert client.receive(timeout=5) == "echo: hi"
        edited = time.monotonic()
        app.write_text(app.read_text().replace('PREFIX = "echo"', 'PREFIX = "v2"'))

        reasons: list[int | None] = []

        def closed() -> bool:  # the old process shuts the open websocket when it drains
            try:
                client.receive(timeout=0.1)
            except simple_websocket.ConnectionClosed as exc:
                reasons.append(exc.reason)
                return True
            return not client.connected

        wait_until(closed, 10, "the old websocket to close")
        assert reasons == [1012]  # "service restart": clients may reconnect at once
    finally:
        with contextlib.suppress(simple_websocket.ConnectionClosed):
            client.close()
    assert wait_until(lambda: echo_once(url, "again"), what="reconnect") == "v2: again"
    assert time.monotonic() - edited < 4  # well under --graceful-timeout (5 s)
    assert server.get("/").status_code == 200


@pytest.mark.parametrize("gws", GWS)
def test_socketio_round_trip_debugger_and_reconnect(
    project: Path, dev_server, tmp_path: Path, gws: str
) -> None:
    app = project / "app.py"
    shutil.copy(EXAMPLES / "socketio" / "app.py", app)
    server = dev_server("app.py", **gws_env(gws, tmp_path))
    assert "Socket.IO example v1" in server.get("/").text
    boom = server.get("/boom")  # the debugger sits inside Flask-SocketIO's middleware
    assert boom.status_code == 500 and "Werkzeug Debugger" in boom.text
    client = socketio.Client(reconnection_delay=0.1, reconnection_delay_max=0.5)
    client.connect(server.url, wait_timeout=10)
    try:
        wait_until(lambda: client.transport() == "websocket", 10, "the websocket upgrade")
        assert client.call("hello", "x", timeout=5) == {"version": "v1", "echo": "x"}
        edited = time.monotonic()
        app.write_text(app.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))

        def version() -> str | None:
            try:
                return str(client.call("hello", "y", timeout=1)["version"])
            except (socketio.exceptions.SocketIOError, KeyError, TypeError):
                return None

        wait_until(lambda: version() == "v2", 15, "v2 over the reconnected client")
        assert time.monotonic() - edited < 4  # the old process closed it, not a timeout
        assert client.transport() == "websocket"
    finally:
        client.disconnect()
    assert "gevent-websocket server is not configured" not in server.log()


def test_engineio_requests_only_go_to_gevent_websocket() -> None:
    from geventdev.http.websockets import is_engineio_websocket

    upgrade = {"HTTP_UPGRADE": "websocket"}
    assert is_engineio_websocket({**upgrade, "QUERY_STRING": "EIO=4&transport=websocket&sid=a"})
    assert not is_engineio_websocket({**upgrade, "QUERY_STRING": ""})  # flask-sock
    assert not is_engineio_websocket({"QUERY_STRING": "EIO=4&transport=polling"})
