"""``geventdev [TARGET] [OPTIONS]``, ``python -m geventdev`` and ``flask gevent``.

The click options are generated from ``Config``'s fields, so each option is declared once. The
CLI maps options to a ``Config``, binds the socket and hands over to the monitor. It imports no
gevent and no app code.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click

from geventdev import __version__, logs, tls
from geventdev.cli.banner import banner
from geventdev.config import ENV_PREFIX, Config
from geventdev.monitor.envfiles import environ_with_env_files
from geventdev.monitor.loop import Monitor
from geventdev.net import (
    BindError,
    bind_listener,
    bind_unix_listener,
    is_local_host,
    remove_unix_socket,
)
from geventdev.stdio import silence, unbreakable
from geventdev.tls import TLSError

#: The environment as it was before any env file was read: each child's environment is rebuilt
#: from it, so an edited or removed value in ``.env`` takes effect on the next restart.
ORIGINAL_ENVIRON = dict(os.environ)


class Separated(click.ParamType):  # type: ignore[type-arg]  # generic in click 8.3+ only
    """A value list separated by ``os.pathsep`` (flask's ``SeparatedPathType``), also repeatable."""

    name = "paths"
    envvar_list_splitter = os.pathsep

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value


def _flatten(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(item for v in value for item in v.split(os.pathsep) if item)


def _load_env_files(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # Eager, like flask's -e: FLASK_APP, FLASK_RUN_PORT... from the files feed the other options.
    os.environ.update(environ_with_env_files(value, ORIGINAL_ENVIRON))
    return value


def _param_type(field: dataclasses.Field[Any]) -> Any:
    meta = field.metadata
    if "choices" in meta:
        return click.Choice(meta["choices"])
    if meta.get("type") == "path":
        return click.Path(exists=True, dir_okay=False)
    if meta.get("split"):
        return Separated()
    low, high = meta.get("min"), meta.get("max")
    if field.type == "int":
        return click.IntRange(low, high)
    if field.type == "float":
        return click.FloatRange(low, high)
    return None  # click infers str, or a boolean flag from "--x/--no-x"


def option_envvars(field: dataclasses.Field[Any]) -> list[str]:
    """Where an option is read from the environment, first found wins: flask's own name where
    Flask defines one (``FLASK_RUN_PORT``), then ``GEVENTDEV_<OPTION>`` (``GEVENTDEV_PORT``)."""
    return [*field.metadata["envvar"], ENV_PREFIX + field.name.upper()]


def config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``command`` with one click option per ``Config`` field."""
    for field in reversed(dataclasses.fields(Config)):
        meta = field.metadata
        kwargs: dict[str, Any] = {
            "help": meta["help"],
            "default": None,
            "envvar": option_envvars(field),
            "show_envvar": True,
            "type": _param_type(field),
        }
        if meta.get("split"):
            kwargs.update(multiple=True, callback=_flatten)
        if field.name == "env_file":
            kwargs.update(is_eager=True, callback=_load_env_files, expose_value=True)
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if isinstance(field.default, (int, float, str)) and not isinstance(field.default, bool):
            kwargs.update(default=field.default, show_default=True)  # None: "follows --debug"
        command = click.option(*meta["decls"], field.name, **kwargs)(command)
    return command


def make_config(target: str | None, params: dict[str, Any]) -> Config:
    """Build the config from parsed options: unset options keep ``Config``'s defaults."""
    if target and params.get("app") and target != params["app"]:
        raise click.UsageError(f"Got two apps: {target!r} and --app {params['app']!r}; pick one.")
    values = {k: v for k, v in params.items() if v is not None and v != ()}
    if target:
        values["app"] = target
    try:
        return Config(**values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def refuse_unsafe(config: Config) -> None:
    """A debugger without a PIN on a network interface lets anyone run code: refuse to start."""
    pin_off = os.environ.get("WERKZEUG_DEBUG_PIN", "").lower() == "off"
    if config.use_debugger and pin_off and not is_local_host(config.host):
        raise TLSError(
            f"WERKZEUG_DEBUG_PIN=off with --host {config.host} would let anyone on the network run"
            " code on this machine: unset WERKZEUG_DEBUG_PIN, use --no-debugger, or bind"
            " 127.0.0.1."
        )


def resolve_adhoc(config: Config) -> Config:
    """Replace ``adhoc`` with real files (made once, in a private temporary directory)."""
    if config.cert != "adhoc":
        return config
    from werkzeug.serving import make_ssl_devcert

    directory = tempfile.mkdtemp(prefix="geventdev-tls-")
    cert, key = make_ssl_devcert(os.path.join(directory, "adhoc"), host="localhost")
    return dataclasses.replace(config, cert=cert, key=key)


def bind(config: Config) -> socket.socket:
    """The listening socket: TCP on ``--host``/``--port``, or a Unix socket."""
    if config.unix_socket:
        return bind_unix_listener(config.unix_socket)
    return bind_listener(config.host, config.port)


def gevent_patched() -> bool:
    """Whether this process was patched at start (``launch.py``); never patches by itself."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("socket"))


def serve(config: Config, environ: Mapping[str, str] = ORIGINAL_ENVIRON) -> int:
    """Bind, print the banner and run the monitor until it stops; return the exit status.
    ``environ`` is what each app process's environment is rebuilt from (plus the env files)."""
    try:
        tls.check(config)
        refuse_unsafe(config)
    except TLSError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 2
    try:
        # the monitor's lines never take it down: a reader that went away is dropped (stdio)
        logs.setup(config.log_config, config.log_level, unbreakable(sys.stderr))
    except logs.LogConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 2
    config = resolve_adhoc(config)
    try:
        listener = bind(config)
    except BindError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 1
    try:
        port = 0 if config.unix_socket else listener.getsockname()[1]
        try:
            for line in banner(config, port, sys.stderr):
                logs.say(line)
        except BrokenPipeError:  # `geventdev app.py 2>&1 | head -3`: keep serving, print nothing
            silence(sys.stderr)
        if not config.use_reloader and gevent_patched():
            # The one crossing to the app side: --no-reload serves here (launch.py patched first).
            from geventdev.app.main import serve_inline

            logs.say(" * Serving from this process (--no-reload): attach debuggers here")
            return serve_inline(config, listener)
        with listener:
            return Monitor(config, listener, environ, sys.stderr).run()
    finally:
        if config.unix_socket:
            remove_unix_socket(config.unix_socket)


def run(target: str | os.PathLike[str] | None = None, **options: Any) -> int:
    """Serve ``target`` in the foreground until Ctrl+C (or SIGTERM); return the exit status.

    The same server as the ``geventdev`` command: options are ``Config`` fields (``port=8000``,
    ``reload=False``...). This process stays the plain-Python monitor; only the app processes it
    spawns are monkey-patched. Call it from the main thread (it handles SIGINT and SIGTERM until
    it returns, then restores the previous handlers; SIGHUP restarts the app meanwhile).
    """
    if target is not None:
        options["app"] = os.fspath(target)
    return serve(Config(**options))  # the monitor restores the signal handlers it set


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_message())
        ctx.exit()


def version_message() -> str:
    parts = []
    for dist in ("gevent", "Flask", "Werkzeug", "watchdog"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return f"geventdev {__version__} ({', '.join(parts)}, Python {platform.python_version()})"


CONTEXT = {"help_option_names": ["--help"], "max_content_width": 100}


@click.command("geventdev", context_settings=CONTEXT)
@click.argument("target", required=False, metavar="[TARGET]")
@config_options
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show geventdev's, gevent's, Flask's and Werkzeug's versions.",
)
def command(target: str | None, **params: Any) -> None:
    """Serve a Flask (or any WSGI) app with gevent, the werkzeug debugger and code reload.

    TARGET is what 'flask --app' takes: app.py, a package, 'module:name',
    "module:create_app('dev')", or any WSGI callable such as 'mysite.wsgi:application'.
    """
    sys.exit(serve(make_config(target, params)))


def main() -> None:
    command.main(prog_name="geventdev")
