"""Logging as a real Flask project sets it up: a ``dictConfig`` file and the usual idioms.

    geventdev app.py --log-config logging.json
    gunicorn -k gevent --log-config-json logging.json app:app

``logging.json`` formats every record as ``LEVEL [logger] message`` on stderr: this app's own
lines, geventdev's `` * `` lines (the ``geventdev`` logger) and gunicorn's (whose defaults name the
``console`` and ``error_console`` handlers, so the file defines both). The access log goes to
the ``werkzeug`` logger, as under ``flask run``, so the everyday idiom below silences it under
``flask run`` and geventdev alike (gunicorn has its own access log, off unless asked for).
"""

from __future__ import annotations

import logging

from flask import Flask

# The everyday idiom: keep the console for the app's own lines, not one line per request.
logging.getLogger("werkzeug").setLevel(logging.ERROR)
log = logging.getLogger(__name__)

app = Flask(__name__)


@app.route("/")
def index() -> str:
    log.info("index visited")
    return "logged"
