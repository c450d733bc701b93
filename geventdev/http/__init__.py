"""HTTP/1.1 and WebSockets on gevent's pywsgi: the server, strict framing, the websocket rule.

Knows nothing of Flask or live reload: it serves any WSGI app.
"""
