"""Flask ``async def`` views under gevent (pallets/flask#5881).

    geventdev examples/async_views/app.py
    gunicorn -k gevent -w 1 --chdir examples/async_views app:app

Stock Flask fails concurrent async views once gevent has patched (asgiref finds an event loop
already running in the same OS thread). geventdev runs each one with asyncio.run in an OS thread
from a pool, and prints a notice at start; the `enable` line below does the same in production.
"""

import asyncio

from flask import Flask, request

import geventdev.asyncviews

app = Flask(__name__)
geventdev.asyncviews.enable(app)  # for gunicorn -k gevent; a no-op until gevent has patched


@app.route("/")
async def index():
    await asyncio.sleep(float(request.args.get("seconds", "0.1")))
    return {"name": request.args.get("name", "world")}


@app.route("/gather")
async def gather():
    # three 0.2 s waits at once, on this request's own event loop
    results = await asyncio.gather(*(asyncio.sleep(0.2, result=n) for n in range(3)))
    return {"results": results}


@app.route("/sync")
def sync():
    return "a plain view"
