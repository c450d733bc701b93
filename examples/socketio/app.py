"""Flask-SocketIO in gevent mode.

    geventdev examples/socketio/app.py
    gunicorn -k gevent -w 1 --chdir examples/socketio app:app

Without gevent-websocket installed (recommended: its last release is from 2017), Socket.IO's
websocket transport runs on simple-websocket under plain pywsgi and ``gunicorn -k gevent``. With
it installed, engine.io requires its handler: geventdev then uses it for Socket.IO's requests only,
and in production use ``-k geventdev.workers.GeventWebSocketWorker``.
"""

from flask import Flask
from flask_socketio import SocketIO

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent")
VERSION = "v1"


@app.route("/")
def index():
    return f"Socket.IO example {VERSION}"


@app.route("/boom")
def boom():
    raise RuntimeError("the debugger still works beside Socket.IO")


@socketio.on("hello")
def hello(data):
    return {"version": VERSION, "echo": data}  # the acknowledgement the client waits for
