"""gunicorn workers that serve websockets the way geventdev does.

``gunicorn -k gevent`` already serves flask-sock, and Flask-SocketIO when gevent-websocket is
*not* installed (both use simple-websocket). With gevent-websocket installed, engine.io needs its
handler, and gevent-websocket's own worker (``geventwebsocket.gunicorn.workers.
GeventWebSocketWorker``) then breaks flask-sock (miguelgrinberg/flask-sock#100). This worker
upgrades only engine.io's requests with gevent-websocket, as geventdev does in development::

    gunicorn -k geventdev.workers.GeventWebSocketWorker -w 1 app:app
"""

from __future__ import annotations

from gunicorn.workers.ggevent import (  # type: ignore[import-untyped]
    GeventPyWSGIWorker,
    PyWSGIHandler,
)

from geventdev.http.websockets import gevent_websocket_handler


class GeventWebSocketWorker(GeventPyWSGIWorker):  # type: ignore[misc]
    """gunicorn's pywsgi gevent worker, with gevent-websocket for engine.io requests only."""

    wsgi_handler = gevent_websocket_handler(PyWSGIHandler)
