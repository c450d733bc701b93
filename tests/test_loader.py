"""App discovery in-process (the child's loader), without serving."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from geventdev.app.loader import NoAppError, error_app, load_app, traceback_files


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory of test apps as cwd; sys.path and sys.modules are restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    files = {
        "hello.py": "from flask import Flask\napp = Flask('hello')\n",
        "factory.py": textwrap.dedent(
            """
            from flask import Flask
            def create_app(env='prod'):
                app = Flask('factory')
                app.config['ENV_NAME'] = env
                return app
            """
        ),
        "plain.py": "def application(environ, start_response):\n    return [b'x']\n",
        "plainapp.py": (
            "class App:\n    def __call__(self, e, s):\n        return [b'y']\n\napp = App()\n"
        ),
        "noapp.py": "x = 1\n",
        "broken_import.py": "import surely_missing_module_xyz\n",
        "raises.py": "raise RuntimeError('boom at import')\n",
        "pkg/__init__.py": "from flask import Flask\napplication = Flask('pkg')\n",
        "pkg/inner.py": "from flask import Flask\napp = Flask('inner')\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


@pytest.mark.parametrize(
    ("target", "name", "is_flask"),
    [
        ("hello.py", "hello", True),
        ("hello", "hello", True),
        ("hello:app", "hello", True),
        ("factory.py", "factory", True),
        ("factory:create_app('dev')", "factory", True),
        ("factory:create_app(env='dev')", "factory", True),
        ("pkg", "pkg", True),
        ("pkg/inner.py", "inner", True),
        ("pkg.inner:app", "inner", True),
        ("plain:application", None, False),
        ("plain.py", None, False),
        ("plainapp.py", None, False),
    ],
)
def test_finds_the_app(apps: Path, target: str, name: str | None, is_flask: bool) -> None:
    loaded = load_app(target)
    assert loaded.is_flask is is_flask
    assert callable(loaded.app)
    if name:
        assert loaded.app.name == name  # type: ignore[attr-defined]


def test_factory_arguments_are_literals(apps: Path) -> None:
    assert load_app("factory:create_app('dev')").app.config["ENV_NAME"] == "dev"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing.py", "Could not import 'missing'."),
        ("noapp.py", "Failed to find Flask application or factory in module 'noapp'"),
        ("hello:nope", "Failed to find attribute 'nope' in 'hello'."),
        ("hello:app(", "Failed to parse 'app(' as an attribute name or function call."),
        ("factory:create_app(x)", "Failed to parse arguments as literal values"),
        ("factory:create_app(1, 2, 3)", "could not be called with the specified arguments"),
        ("noapp:x", "A valid WSGI application was not obtained from 'noapp:x'."),
    ],
)
def test_usage_errors(apps: Path, target: str, message: str) -> None:
    with pytest.raises(NoAppError, match=None) as info:
        load_app(target)
    assert message in str(info.value)


def test_default_is_wsgi_then_app(apps: Path) -> None:
    with pytest.raises(NoAppError, match="Could not locate a Flask application"):
        load_app(None)
    (apps / "app.py").write_text("from flask import Flask\napp = Flask('appmod')\n")
    assert load_app(None).app.name == "appmod"  # type: ignore[attr-defined]


@pytest.mark.parametrize("target", ["broken_import.py", "raises.py"])
def test_errors_inside_the_module_propagate(apps: Path, target: str) -> None:
    with pytest.raises((ImportError, RuntimeError)) as info:
        load_app(target)
    assert str(apps / target) in traceback_files(info.value)


def test_syntax_error_names_its_file(apps: Path) -> None:
    (apps / "bad.py").write_text("def f(:\n")
    with pytest.raises(SyntaxError) as info:
        load_app("bad.py")
    assert traceback_files(info.value)[0] == str(apps / "bad.py")


def test_error_app_without_debugger_is_text_or_an_escaped_page() -> None:
    try:
        raise ValueError("<nope>")
    except ValueError as exc:
        app = error_app(exc, debugger=False)
    started: list[tuple[str, dict[str, str]]] = []
    for accept, mime, shown in [
        ("*/*", "text/plain", b"ValueError: <nope>"),
        ("text/html,*/*;q=0.8", "text/html", b"ValueError: &lt;nope&gt;"),
    ]:
        started.clear()
        body = b"".join(app({"HTTP_ACCEPT": accept}, lambda s, h: started.append((s, dict(h)))))
        [(status, headers)] = started
        assert status == "500 INTERNAL SERVER ERROR" and shown in body
        assert headers["Content-Type"] == f"{mime}; charset=utf-8"
        assert headers["Content-Length"] == str(len(body))


def test_error_app_traceback_does_not_grow() -> None:
    try:
        raise ValueError("nope")
    except ValueError as exc:
        app = error_app(exc, debugger=True)
    depths = []
    for _ in range(3):
        with pytest.raises(ValueError) as info:
            app({}, lambda *a: None)
        tb, depth = info.value.__traceback__, 0
        while tb:
            depth, tb = depth + 1, tb.tb_next
        depths.append(depth)
    assert depths[0] == depths[1] == depths[2]
