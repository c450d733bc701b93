"""Seed 004: an asyncio event loop in a background thread, fed by Flask views.

    geventdev examples/asyncio_loop/app.py
    gunicorn -k gevent -w 1 --chdir examples/asyncio_loop app:app

At import, a thread runs the loop forever; the main thread waits (with a timeout) on a
``threading.Event`` that the loop's start-up coroutine sets, e.g. once a client session is
connected. Views submit coroutines with ``asyncio.run_coroutine_threadsafe`` and wait on the
future. Under gevent the "thread" is a greenlet and the loop's selector is gevent's, so a view
waiting on a future lets every other request run: /work?seconds=1 twenty times at once takes
about one second.
"""

import asyncio
import logging
import os
import threading

from flask import Flask, request

app = Flask(__name__)
state = {"connected": False, "in_flight": 0}


async def initialize_connection(ready_event):
    """Stands in for connecting a long-lived client (an MCP session, a database pool)."""
    try:
        await asyncio.sleep(0.05)
        state["connected"] = True
    finally:
        ready_event.set()  # success or failure, release the waiting main thread


def start_event_loop(loop, ready_event):
    asyncio.set_event_loop(loop)
    loop.create_task(initialize_connection(ready_event))
    loop.run_forever()


ready_event = threading.Event()
background_event_loop = asyncio.new_event_loop()
loop_thread = threading.Thread(
    target=start_event_loop,
    args=(background_event_loop, ready_event),
    daemon=True,
    name="asyncio-loop",
)
loop_thread.start()
is_ready = ready_event.wait(timeout=30.0)
logging.getLogger(__name__).info("background loop ready: %s", is_ready)


async def work(seconds, n):
    await asyncio.sleep(seconds)
    return n


@app.route("/")
def index():
    return {"ready": is_ready, **state, "pid": os.getpid()}


@app.route("/work")
def run_work():
    seconds = float(request.args.get("seconds", "0.5"))
    n = int(request.args.get("n", "0"))
    future = asyncio.run_coroutine_threadsafe(work(seconds, n), background_event_loop)
    state["in_flight"] += 1
    try:
        return {"n": future.result(timeout=30)}
    finally:
        state["in_flight"] -= 1
