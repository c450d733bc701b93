"""Flask's own documented patterns serve exactly as Flask serves them (issue 16, item 5).

Each pattern is the example from Flask's docs (class-based views: ``View`` without ``methods`` and
``MethodView``; blueprints; the application factory; async views; "Large Applications as
Packages", whose views module imports the app from the package). It is served by the real
``geventdev`` and every URL's status and body are compared with Flask's own test client on the
same app, run in a fresh interpreter. A target Flask cannot discover gives ``flask run``'s very
error, never a fallback app.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from conftest import DevServer, geventdev_env, run_cli, write

pytestmark = pytest.mark.e2e

VIEWS = '''
from flask import Flask, jsonify, request
from flask.views import MethodView, View


class ListView(View):
    """docs/views.rst, "Basic Reusable View": no ``methods`` attribute."""

    def __init__(self, items):
        self.items = items

    def dispatch_request(self):
        return ", ".join(self.items)


class ItemAPI(MethodView):
    init_every_request = False

    def get(self, id):
        return jsonify(id=id, method="get")

    def patch(self, id):
        return jsonify(id=id, method="patch")

    def delete(self, id):
        return "", 204


class AsyncView(View):
    async def dispatch_request(self):
        return "async class view"


app = Flask(__name__)
app.add_url_rule("/users/", view_func=ListView.as_view("user_list", ["ann", "bob"]))
app.add_url_rule("/items/<int:id>", view_func=ItemAPI.as_view("item"))
app.add_url_rule("/async-class", view_func=AsyncView.as_view("async_class"))


@app.route("/get-data")
async def get_data():
    return {"path": request.path}
'''

FACTORY = {
    "flaskr/__init__.py": """
        from flask import Flask


        def create_app(test_config=None):
            app = Flask(__name__, instance_relative_config=True)
            app.config.from_mapping(SECRET_KEY="dev", GREETING="factory")
            if test_config is not None:
                app.config.from_mapping(test_config)
            from . import blog
            app.register_blueprint(blog.bp)

            @app.route("/hello")
            def hello():
                return app.config["GREETING"]

            return app
        """,
    "flaskr/blog.py": """
        from flask import Blueprint, render_template_string

        bp = Blueprint("blog", __name__, url_prefix="/blog", static_folder="static")


        @bp.route("/")
        def index():
            return render_template_string("<p>{{ request.blueprint }} index</p>")


        @bp.route("/<int:id>/update", methods=("GET", "POST"))
        def update(id):
            return f"update {id}"
        """,
    "flaskr/static/blog.css": "p { color: red }\n",
}

PACKAGE = {
    "yourapplication/__init__.py": """
        from flask import Flask
        app = Flask(__name__)

        import yourapplication.views
        """,
    "yourapplication/views.py": """
        from yourapplication import app

        @app.route('/')
        def index():
            return 'Hello World!'
        """,
}

REQUESTS = {
    "views.py": [
        ("GET", "/users/"),
        ("POST", "/users/"),
        ("GET", "/items/3"),
        ("PATCH", "/items/3"),
        ("DELETE", "/items/3"),
        ("POST", "/items/3"),
        ("GET", "/async-class"),
        ("GET", "/get-data"),
        ("GET", "/nope"),
    ],
    "flaskr": [
        ("GET", "/hello"),
        ("GET", "/blog/"),
        ("GET", "/blog/7/update"),
        ("POST", "/blog/7/update"),
        ("GET", "/blog/static/blog.css"),
    ],
    "flaskr:create_app({'GREETING': 'args'})": [("GET", "/hello")],
    "yourapplication": [("GET", "/"), ("GET", "/missing")],
}

#: Flask's own test client on the same target, in a fresh interpreter (Flask's discovery), in
#: debug as ``flask run --debug`` and geventdev serve it (JSON is indented in debug).
FLASK_CLIENT = """
import json, sys
from flask.cli import ScriptInfo
app = ScriptInfo(app_import_path=sys.argv[1]).load_app()
client = app.test_client()
out = []
for method, path in json.loads(sys.argv[2]):
    r = client.open(path, method=method)
    out.append([r.status_code, r.get_data(as_text=True)])
print(json.dumps(out))
"""


def make_project(project: Path) -> None:
    write(project / "views.py", VIEWS)
    for name, text in {**FACTORY, **PACKAGE}.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        write(project / name, textwrap.dedent(text))


def flask_answers(project: Path, target: str, calls: list[tuple[str, str]]) -> list[list[object]]:
    result = subprocess.run(
        [sys.executable, "-c", FLASK_CLIENT, target, json.dumps(calls)],
        cwd=project,
        env=geventdev_env(FLASK_DEBUG="1"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    answers: list[list[object]] = json.loads(result.stdout)
    return answers


@pytest.mark.parametrize("target", list(REQUESTS))
def test_documented_patterns_serve_as_flask_serves_them(
    project: Path, dev_server: Callable[..., DevServer], target: str
) -> None:
    make_project(project)
    calls = REQUESTS[target]
    expected = flask_answers(project, target, calls)
    server = dev_server(target, "--no-debugger")
    server.wait_for_log(" * Running on")
    got = []
    for method, path in calls:
        response = requests.request(method, server.url + path, timeout=15)
        got.append([response.status_code, response.text])
    assert got == expected, server.log()
    assert "Traceback" not in server.log()


MULTI = (
    "from flask import Flask\nfrom werkzeug.middleware.dispatcher import DispatcherMiddleware\n"
    "a = Flask('a')\nb = Flask('b')\napplication = DispatcherMiddleware(a, {'/b': b})\n"
)
NEEDS_ARGS = (
    "from flask import Flask\nfrom werkzeug.middleware.proxy_fix import ProxyFix\n"
    "def create_app(config):\n    return Flask('x')\n\napp = ProxyFix(create_app('prod'))\n"
)
NOT_FLASK = (
    "def create_app():\n    return application\n\n"
    "def application(environ, start_response):\n"
    "    start_response('200 OK', [])\n    return [b'wrong app']\n"
)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (MULTI, "Detected multiple Flask applications in module 'target'."),
        (NEEDS_ARGS, "Detected factory 'create_app' in module 'target', but could not call it"),
        (NOT_FLASK, "Failed to find Flask application or factory in module 'target'."),
    ],
)
def test_discovery_errors_are_flask_run_s(project: Path, source: str, message: str) -> None:
    """``flask run`` refuses these; serving a fallback ``app``/``application`` would serve the
    wrong app (or an empty one)."""
    write(project / "target.py", source)
    flask = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "target", "run", "--port", "0"],
        cwd=project,
        env=geventdev_env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert flask.returncode == 2 and message in flask.stderr, flask.stderr
    flask_error = next(line for line in flask.stderr.splitlines() if line.startswith("Error: "))
    result = run_cli(project, "target", "--port", "0", "--no-reload")
    assert result.returncode == 2, result.stderr
    assert flask_error in result.stderr.splitlines(), result.stderr
    reloading = run_cli(project, "target", "--port", "0")
    assert reloading.returncode == 2 and flask_error in reloading.stderr, reloading.stderr


def test_a_plain_wsgi_module_still_serves(
    project: Path, dev_server: Callable[..., DevServer]
) -> None:
    write(
        project / "plain.py",
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'plain wsgi']\n",
    )
    server = dev_server("plain.py")
    assert server.wait_for_text("/", "plain wsgi").status_code == 200
