"""Where geventdev's per-request CPU goes: the layers it adds to bare pywsgi, one at a time.

    python benchmarks/overhead.py [--rounds 5] [--requests 20000] [--conns 8] [--quick]

No network load generator and no second process to compete with: each variant runs in a fresh
``python benchmarks/overhead.py --variant NAME`` that patches gevent, builds one server on
127.0.0.1 with the hello app, and drives it with ``--conns`` keep-alive client greenlets in the
same process (same hub, one core) for ``--requests`` requests. The process's CPU time per request
is the cost of server + client; the client part is the same in every variant, so differences
between rows are the cost of a layer. Variants run interleaved, in a shuffled order per round.
This is a microscope for the throughput gap, not a throughput figure.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
from _common import HELLO_APP, HOST, PY, base_env, header, median, shuffled, table  # noqa: E402

VARIANTS = {
    "pywsgi": "gevent.pywsgi.WSGIServer + Flask app, access log -> file",
    "pywsgi_nolog": "the same, log=None",
    "pywsgi_yield": "pywsgi, gevent.sleep(0) before reading each keep-alive request",
    "pywsgi_debugger": "pywsgi + werkzeug DebuggedApplication(evalex=True)",
    "pywsgi_debugger_fastpath": "pywsgi + DebuggedApplication with a no-Request fast path",
    "geventdev_server": "geventdev's server class (DevHandler) + bare Flask app",
    "geventdev_full": "geventdev's server + wrap_app(), dev defaults (what the child serves)",
    "geventdev_nodebugger": "geventdev full, Config(debugger=False)",
    "geventdev_nolivereload": "geventdev full, Config(livereload=False)",
    "geventdev_noalarm": "geventdev full, GEVENT_MONITOR_THREAD_ENABLE=0 (no blocking alarm)",
    "geventdev_fastpath": "geventdev full, DebuggedApplication with the fast path",
    "geventdev_yield": "geventdev full, gevent.sleep(0) before reading each keep-alive request",
}
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def fast_path_debugger() -> None:
    """Patch werkzeug's DebuggedApplication: build no ``Request`` unless the request can be for
    the debugger itself (``__debugger__`` in the query, or the console path in the path)."""
    from werkzeug.debug import DebuggedApplication

    slow_call = DebuggedApplication.__call__

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        console = self.console_path if self.evalex else None
        if "__debugger__" not in environ.get("QUERY_STRING", "") and (
            console is None or console not in environ.get("PATH_INFO", "")
        ):
            return self.debug_application(environ, start_response)
        return slow_call(self, environ, start_response)

    DebuggedApplication.__call__ = __call__


def yielding(handler_class: type) -> type:
    """``handler_class`` with a ``gevent.sleep(0)`` before each keep-alive request is read."""

    def read_requestline(self):  # type: ignore[no-untyped-def]
        if getattr(self, "_served", False):
            gevent.sleep(0)
        self._served = True
        return handler_class.read_requestline(self)

    return type(
        f"Yielding{handler_class.__name__}",
        (handler_class,),
        {"read_requestline": read_requestline},
    )


def build(variant: str, listener: socket.socket, log):  # type: ignore[no-untyped-def]
    from gevent.pywsgi import WSGIHandler, WSGIServer

    sys.path.insert(0, os.getcwd())
    import hello

    app = hello.app
    if variant.startswith("pywsgi"):
        if variant.endswith("fastpath"):
            fast_path_debugger()
        if "debugger" in variant:
            from werkzeug.debug import DebuggedApplication

            app = DebuggedApplication(app, evalex=True)
        handler = yielding(WSGIHandler) if variant == "pywsgi_yield" else WSGIHandler
        log = None if variant == "pywsgi_nolog" else log
        return WSGIServer(listener, app, log=log, handler_class=handler)

    from geventdev.app.loader import load_app
    from geventdev.app.stack import wrap_app
    from geventdev.config import Config
    from geventdev.http.server import server_class

    options = {
        "geventdev_nodebugger": {"debugger": False},
        "geventdev_nolivereload": {"livereload": False},
    }.get(variant, {})
    config = Config(app="hello.py", **options)
    if variant == "geventdev_fastpath":
        fast_path_debugger()
    if variant != "geventdev_server":
        loaded = load_app("hello.py")
        app = wrap_app(loaded, loaded.app, config)
    server = server_class()(listener, app, config, log=log)
    if variant == "geventdev_yield":
        server.handler_class = yielding(server.handler_class)
    return server


def client(port: int, count: int) -> None:
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    for _ in range(count):
        sock.sendall(REQUEST)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                match = re.search(rb"(?i)content-length:\s*(\d+)", buf[:end])
                size = end + 4 + int(match.group(1))
                if len(buf) >= size:
                    buf = buf[size:]
                    break
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
    sock.close()


def run_variant(variant: str, requests: int, conns: int) -> None:
    """Child mode: serve and load in this process; print one JSON line."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind((HOST, 0))
    listener.listen(1024)
    with open(os.path.join(tempfile.gettempdir(), f"overhead-{os.getpid()}.log"), "w") as log:
        server = build(variant, listener, log)
        server.start()
        port = listener.getsockname()[1]
        client(port, 50)  # warm-up: imports, caches
        per = requests // conns
        cpu0, wall0 = time.process_time(), time.perf_counter()
        gevent.joinall([gevent.spawn(client, port, per) for _ in range(conns)], raise_error=True)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        server.stop(timeout=1)
        name = log.name
    os.unlink(name)
    done = per * conns
    print(json.dumps({"cpu_us": cpu / done * 1e6, "wall_us": wall / done * 1e6}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5000 requests")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_variant(args.variant, args.requests, args.conns)
        return
    if args.quick:
        args.rounds, args.requests = 2, 5000
    header(f"per-request overhead, in-process, {args.conns} keep-alive client greenlets")
    variants = [v for v in args.variants.split(",") if v]
    results: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="geventdev-bench-") as tmp:
        Path(tmp, "hello.py").write_text(HELLO_APP)
        path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
        env = base_env(PYTHONPATH=path)
        for rnd in range(args.rounds):
            for variant in shuffled(variants, seed=rnd):
                run_env = dict(env)
                if variant == "geventdev_noalarm":
                    run_env["GEVENT_MONITOR_THREAD_ENABLE"] = "0"
                argv = [PY, __file__, "--variant", variant, "--requests", str(args.requests)]
                argv += ["--conns", str(args.conns)]
                out = subprocess.run(
                    argv, cwd=tmp, env=run_env, capture_output=True, text=True, timeout=300
                )
                if out.returncode != 0:
                    print(f"  {variant}: failed\n{out.stderr[-2000:]}")
                    continue
                cpu = json.loads(out.stdout.strip().splitlines()[-1])["cpu_us"]
                results[variant].append(cpu)
                print(f"  round {rnd} {variant:26} {cpu:7.1f} CPU us/request", flush=True)
    base = median(results.get("pywsgi", []))
    rows = [
        [v, median(xs), median(xs) - base, ", ".join(f"{x:.0f}" for x in xs), VARIANTS[v]]
        for v, xs in results.items()
        if xs
    ]
    print("\n## CPU per request (server + in-process client), medians\n")
    print(table(["variant", "CPU us/req", "+ vs pywsgi", "per round", "what"], rows))


if __name__ == "__main__":
    main()
