"""The ceiling: bare ``gevent.pywsgi`` with ``TCP_NODELAY``, the way a hand-rolled script serves.

    python benchmarks/serve_pywsgi.py MODULE:APP --port PORT [--no-nodelay] [--log none|stderr]
        [--debugged] [--yield-between-requests]

Patches first, imports the app from the current directory, binds 127.0.0.1 with ``SO_REUSEADDR``
and (unless ``--no-nodelay``) ``TCP_NODELAY``, which accepted sockets inherit, then serves until
SIGINT/SIGTERM. ``--debugged`` wraps werkzeug's ``DebuggedApplication``. The benchmarks start it in
its own process group and stop it by signalling that group.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIHandler, WSGIServer  # noqa: E402


class YieldingHandler(WSGIHandler):  # type: ignore[misc]
    """Yield to the hub before reading every ``every``-th keep-alive request on a connection.

    Used by the tail-latency experiment only: without it a connection whose next request is
    already buffered is served again before any other ready connection.
    """

    every = 1
    _served = 0

    def read_requestline(self):  # type: ignore[no-untyped-def]
        self._served += 1
        if self._served > 1 and self._served % self.every == 0:
            gevent.sleep(0)
        return super().read_requestline()


class CountingMixin:  # first in the MRO: counts, then the handler reads (and maybe yields)
    """Count keep-alive requests that were already waiting in the socket when the previous
    response was done: those are served without a trip through the hub. Printed at exit."""

    stats = {"requests": 0, "already_waiting": 0, "longest_streak": 0}
    _select = monkey.get_original("select", "select")
    socket: Any  # the handler's connection (pywsgi.WSGIHandler sets it)
    _streak: int

    def read_requestline(self):  # type: ignore[no-untyped-def]
        stats = CountingMixin.stats
        if getattr(self, "_counted", 0):
            ready = bool(self._select([self.socket.fileno()], [], [], 0)[0])
            stats["already_waiting"] += ready
            self._streak = self._streak + 1 if ready else 0
            stats["longest_streak"] = max(stats["longest_streak"], self._streak)
        else:
            self._streak = 0
        self._counted = getattr(self, "_counted", 0) + 1
        stats["requests"] += 1
        return super().read_requestline()  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", help="module:attribute, imported from the current directory")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--no-nodelay", dest="nodelay", action="store_false")
    parser.add_argument("--log", choices=("none", "stderr"), default="stderr")
    parser.add_argument("--debugged", action="store_true")
    parser.add_argument("--backlog", type=int, default=2048)
    parser.add_argument("--yield-between-requests", action="store_true")
    parser.add_argument("--yield-every", type=int, default=1, help="with the flag above")
    parser.add_argument("--count-ready", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, ".")
    module, _, attr = args.target.partition(":")
    app = getattr(importlib.import_module(module), attr or "app")
    if args.debugged:
        from werkzeug.debug import DebuggedApplication

        app = DebuggedApplication(app, evalex=True)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((args.host, args.port))
    sock.listen(args.backlog)

    handler = WSGIHandler
    if args.yield_between_requests:
        handler = type("Yielding", (YieldingHandler,), {"every": args.yield_every})
    if args.count_ready:
        handler = type("CountingHandler", (CountingMixin, handler), {})
    server = WSGIServer(
        sock, app, log=None if args.log == "none" else "default", handler_class=handler
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, server.stop, 1)
    print(f" * Running on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()
    if args.count_ready:
        print(f" * ready-stats: {json.dumps(CountingMixin.stats)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
