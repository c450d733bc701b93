"""The seed-003 demo: one slow route must not block the others.

    geventdev examples/slow/app.py

Open http://127.0.0.1:5000/testsleep in one tab and http://127.0.0.1:5000/ in another:
under `flask run` (one thread per request, or one thread in total with app.run(threaded=False))
the second page can wait; under geventdev, / answers at once while /testsleep sleeps.
"""

import os
from time import sleep

from flask import Flask, request

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello World"


@app.route("/testsleep")
def test_sleep():
    seconds = float(request.args.get("seconds", os.environ.get("SLEEP_SECONDS", "10")))
    print(f"/testsleep: sleeping {seconds:g} s", flush=True)  # watch / answer meanwhile
    # time.sleep is cooperative after gevent's monkey-patching: only this request waits.
    sleep(seconds)
    return "Hi, You wait for about 10 seconds, right?"


@app.route("/boom")
def boom():
    # Raise on purpose: the werkzeug debugger shows the traceback in the browser.
    raise RuntimeError("This is what an error looks like under geventdev.")
