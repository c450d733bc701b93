"""The app under test in ``test_with_geventdev.py``: an app factory, as most Flask projects have.

geventdev "app:create_app('testing')"
"""

from __future__ import annotations

import time

from flask import Flask, request


def create_app(config_name: str = "development") -> Flask:
    app = Flask(__name__)
    app.config["CONFIG_NAME"] = config_name

    @app.route("/")
    def index() -> str:
        return f"Hello from {app.config['CONFIG_NAME']}"

    @app.route("/slow")
    def slow() -> str:
        # Under geventdev time.sleep is cooperative: other requests keep being served meanwhile.
        time.sleep(float(request.args.get("seconds", "1")))
        return "done"

    return app
