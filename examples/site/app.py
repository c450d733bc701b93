"""A small site with templates and static files.

    geventdev examples/site/app.py

Edit templates/index.html and reload the page: the change shows without a restart (Jinja's
auto-reload). Edit app.py: geventdev restarts the app process in the background.
"""

import os

from flask import Flask, render_template

app = Flask(__name__)


@app.route("/")
def index():
    return render_template("index.html", pid=os.getpid(), items=["gevent", "flask", "werkzeug"])


@app.route("/api/status")
def status():
    return {"ok": True, "pid": os.getpid()}
