"""Seed 002: a background thread started at import time, so it also runs under gunicorn.

    geventdev examples/background_thread/app.py
    gunicorn -k gevent -w 1 --chdir examples/background_thread app:app

gunicorn imports the module and never runs ``if __name__ == "__main__"``, so the thread starts at
module level. Under gevent, ``threading.Thread`` is a greenlet and ``time.sleep`` yields, so the
loop never blocks requests. Each process that imports the module (geventdev's app process, each
gunicorn worker) starts exactly one; when geventdev reloads code, the old app process exits and
its thread with it, so threads never pile up.
"""

import logging
import os
import threading
import time

from flask import Flask

app = Flask(__name__)
logger = logging.getLogger(__name__)
TICK_SECONDS = float(os.environ.get("TICK_SECONDS", "5"))
TICK_FILE = os.environ.get("TICK_FILE")  # optional: one "pid tick" line per tick
state = {"ticks": 0, "starts": 0}


def background_task(stop_event):
    logger.info("Background task started in pid %s", os.getpid())
    while not stop_event.is_set():
        state["ticks"] += 1
        if TICK_FILE:
            with open(TICK_FILE, "a") as f:
                f.write(f"{os.getpid()} {state['ticks']}\n")
        time.sleep(TICK_SECONDS)


_background_thread = None
_stop_event = threading.Event()


def start_background_thread():
    global _background_thread
    if _background_thread is None or not _background_thread.is_alive():
        _stop_event.clear()
        _background_thread = threading.Thread(
            target=background_task,
            args=(_stop_event,),
            name="Flask-Background-Task",
            daemon=True,
        )
        _background_thread.start()
        state["starts"] += 1


start_background_thread()  # at import: gunicorn imports this module


@app.route("/")
def index():
    return {
        "pid": os.getpid(),
        "ticks": state["ticks"],
        "starts": state["starts"],
        "alive": _background_thread.is_alive(),
    }
