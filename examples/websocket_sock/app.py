"""A websocket echo with flask-sock (simple-websocket), no gevent-websocket needed.

    geventdev examples/websocket_sock/app.py
    gunicorn -k gevent -w 1 --chdir examples/websocket_sock app:app

Open http://127.0.0.1:5000/ and type. Edit PREFIX and save: geventdev restarts the app, closes
the open websocket at once, and the page reconnects to the new code.
"""

from flask import Flask
from flask_sock import Sock

app = Flask(__name__)
sock = Sock(app)
PREFIX = "echo"

PAGE = """<!doctype html>
<input id="text" autofocus placeholder="type and press Enter"><pre id="log"></pre>
<script>
let ws;
function connect() {
  ws = new WebSocket(`ws://${location.host}/echo`);
  ws.onmessage = (e) => { log.textContent += e.data + "\\n"; };
  ws.onclose = () => setTimeout(connect, 500);  // the server restarted: reconnect
}
connect();
text.onkeydown = (e) => { if (e.key === "Enter") { ws.send(text.value); text.value = ""; } };
</script>
"""


@app.route("/")
def index():
    return PAGE


@sock.route("/echo")
def echo(ws):
    while True:
        ws.send(f"{PREFIX}: {ws.receive()}")
