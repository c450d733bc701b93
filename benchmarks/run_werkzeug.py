"""werkzeug's own reloader, the way ``flask run --debug`` calls it, but with a chosen type.

    python benchmarks/run_werkzeug.py MODULE:APP --port PORT --reloader-type stat|watchdog

Flask 3.1's ``flask run`` has no ``--reloader-type``: with watchdog installed it always uses the
watchdog reloader. This runs ``werkzeug.serving.run_simple(..., use_reloader=True,
use_debugger=True, threaded=True, reloader_type=...)`` on the app imported from the current
directory (which goes on ``sys.path``, as ``flask run`` does), so the stat reloader can be measured.
"""

import argparse
import importlib
import os
import sys

from werkzeug.serving import run_simple


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reloader-type", choices=("stat", "watchdog"), default="stat")
    parser.add_argument("--no-debugger", dest="debugger", action="store_false")
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd())
    module, _, attr = args.target.partition(":")
    app = getattr(importlib.import_module(module), attr or "app")
    app.debug = True
    run_simple(
        "127.0.0.1",
        args.port,
        app,
        use_reloader=True,
        use_debugger=args.debugger,
        threaded=True,
        reloader_type=args.reloader_type,
    )


if __name__ == "__main__":
    main()
