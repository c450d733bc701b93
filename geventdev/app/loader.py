"""App discovery: Flask's rules exactly, plus any WSGI callable (Django, Bottle, Falcon...).

``flask.cli`` does the Flask part (``prepare_import``, ``find_best_app``); ``flask.cli.locate_app``
rejects anything that is not a ``Flask`` instance, so naming an attribute or a factory call is
resolved here, with Flask's parsing rules and wording, accepting any WSGI callable. Runs in the
child only: the monitor never imports the user's app.
"""

from __future__ import annotations

import ast
import html
import importlib
import inspect
import os
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

from geventdev.wsgi import WSGIApp

DEFAULT_FILES = ("wsgi.py", "app.py")
NOT_LOCATED = (
    "Could not locate a Flask application. Use the 'geventdev APP' argument, the '--app' option,"
    " the 'FLASK_APP' environment variable, or a 'wsgi.py' or 'app.py' file in the current"
    " directory."
)


class NoAppError(Exception):
    """The target names no importable module or no app in it: a usage error, not a code error."""


@dataclass(frozen=True)
class LoadedApp:
    app: WSGIApp
    import_name: str
    is_flask: bool


def load_app(target: str | None) -> LoadedApp:
    """Import the target and find its app.

    Raises:
        NoAppError: nothing to import, or no app in the module (Flask's messages).
        BaseException: whatever the user's code raised while importing or in the factory.
    """
    from flask import Flask
    from flask.cli import NoAppException, find_best_app, prepare_import

    if not target:
        found = [f for f in DEFAULT_FILES if os.path.isfile(f)]
        if not found:
            raise NoAppError(NOT_LOCATED)
        target = found[0]
    path, _, name = target.partition(":")
    module_name = prepare_import(path)
    module = _import(module_name)
    try:
        app: Any = _find_by_string(module, name) if name else find_best_app(module)
    except NoAppException as exc:
        fallback = None if name or _has_flask_app(module) else _any_wsgi_app(module)
        if fallback is None:
            raise NoAppError(str(exc)) from None
        app = fallback
    label = f"{module_name}:{name}" if name else module_name
    return LoadedApp(app, label, isinstance(app, Flask))


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "the target itself is missing" is a usage error; a missing import *inside* the
        # module is the user's code failing and is shown as a page (Flask tells these apart too).
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise NoAppError(f"Could not import {module_name!r}.") from None
        raise


def _has_flask_app(module: ModuleType) -> bool:
    """Whether Flask's discovery had something to go on: a Flask instance (several of them) or a
    ``create_app``/``make_app`` factory (one that needs arguments, or returns no Flask app).
    Then Flask's error is the answer, as under ``flask run``; only a module without any of them
    falls back to a plain WSGI callable."""
    from flask import Flask

    if any(isinstance(v, Flask) for v in vars(module).values()):
        return True
    return any(inspect.isfunction(getattr(module, n, None)) for n in ("create_app", "make_app"))


def _any_wsgi_app(module: ModuleType) -> WSGIApp | None:
    """gunicorn's default: a callable named ``application`` or ``app``."""
    for attr in ("application", "app"):
        candidate = getattr(module, attr, None)
        if callable(candidate):
            return candidate  # type: ignore[no-any-return]
    return None


def _find_by_string(module: ModuleType, app_name: str) -> WSGIApp:
    """``name`` or ``factory(literal args)``, as ``flask.cli.find_app_by_string``, any WSGI app."""
    from flask.cli import NoAppException, _called_with_wrong_args

    try:
        expr = ast.parse(app_name.strip(), mode="eval").body
    except SyntaxError:
        raise NoAppException(
            f"Failed to parse {app_name!r} as an attribute name or function call."
        ) from None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if isinstance(expr, ast.Call):
        if not isinstance(expr.func, ast.Name):
            raise NoAppException(f"Function reference must be a simple name: {app_name!r}.")
        try:
            args = [ast.literal_eval(a) for a in expr.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in expr.keywords if k.arg}
        except ValueError:
            raise NoAppException(
                f"Failed to parse arguments as literal values: {app_name!r}."
            ) from None
        name, call = expr.func.id, True
    elif isinstance(expr, ast.Name):
        name, call = expr.id, False
    else:
        raise NoAppException(f"Failed to parse {app_name!r} as an attribute name or function call.")
    try:
        attr = getattr(module, name)
    except AttributeError:
        raise NoAppException(f"Failed to find attribute {name!r} in {module.__name__!r}.") from None
    if call or (inspect.isfunction(attr) and _is_factory(attr)):
        try:
            attr = attr(*args, **kwargs)
        except TypeError as exc:
            if not _called_with_wrong_args(attr):
                raise
            raise NoAppException(
                f"The factory {app_name!r} in module {module.__name__!r} could not be called"
                " with the specified arguments."
            ) from exc
    if not callable(attr):
        raise NoAppException(
            f"A valid WSGI application was not obtained from '{module.__name__}:{app_name}'."
        )
    return attr  # type: ignore[no-any-return]


def _is_factory(func: Callable[..., Any]) -> bool:
    """A bare function name is a factory (Flask calls it) unless it looks like a WSGI callable."""
    params = [
        p
        for p in inspect.signature(func).parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(params) != 2


ERROR_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>App failed to load</title></head>
<body><h1>{title}</h1><pre>{text}</pre></body></html>
"""


def error_app(exc: BaseException, debugger: bool) -> WSGIApp:
    """An app that fails every request with ``exc``: the debugger renders it, or a text page."""
    if not isinstance(exc, Exception):  # SystemExit would escape the debugger and kill the request
        wrapped = RuntimeError(f"The app raised {exc!r} while loading.")
        wrapped.__cause__ = exc
        exc = wrapped
    tb = exc.__traceback__
    text = "".join(traceback.format_exception(type(exc), exc, tb))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if debugger:
            raise exc.with_traceback(tb)  # reset the traceback: it grows with every raise
        title = "The app failed to load; fix it and save to reload."
        if "text/html" in environ.get("HTTP_ACCEPT", ""):  # a browser: live reload can recover it
            page, mime = ERROR_PAGE.format(title=title, text=html.escape(text)), "text/html"
        else:
            page, mime = f"{title}\n\n{text}", "text/plain"
        body = page.encode()
        start_response(
            "500 INTERNAL SERVER ERROR",
            [("Content-Type", f"{mime}; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def traceback_files(exc: BaseException) -> list[str]:
    """The files a load error went through (and a SyntaxError's file): keep watching them."""
    files: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, SyntaxError) and current.filename:
            files.append(current.filename)
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            files.append(tb.tb_frame.f_code.co_filename)
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return [os.path.abspath(f) for f in dict.fromkeys(files) if os.path.isfile(f)]
