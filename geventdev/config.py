"""The one frozen configuration object, shared by the CLI, the monitor and the child.

Each option is declared exactly once, as a dataclass field. Its ``metadata`` carries what the CLI
needs (flags, help, environment variables), so ``cli.py`` builds its click options from these fields
and ``Config(**params)`` builds the object: no option is written out twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from geventdev.net import UNIX_SCHEME

ReloaderType = Literal["auto", "watchdog", "stat"]
#: uvicorn's ``--log-level`` names; ``trace`` is below ``debug`` (5, as in uvicorn).
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
#: Every option can also be set as GEVENTDEV_<OPTION> (after flask's own FLASK_* name, if any).
ENV_PREFIX = "GEVENTDEV_"
#: The env files Flask reads by default (``flask.cli.load_dotenv``), lowest precedence first.
ENV_FILES = (".flaskenv", ".env")


def _opt(*decls: str, help: str, envvar: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {"decls": decls, "help": help, "envvar": envvar, **extra}


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything geventdev was asked to do. Pure data; validated on creation."""

    app: str | None = field(
        default=None,
        metadata=_opt(
            "-A",
            "--app",
            help="The app to serve: 'app.py', 'pkg', 'mod:name', \"mod:create_app('dev')\" "
            "or any WSGI callable 'mod:application'. Default: wsgi.py, then app.py.",
            envvar=("FLASK_APP",),
            metavar="IMPORT",
        ),
    )
    host: str = field(
        default="127.0.0.1",
        metadata=_opt(
            "-h",
            "--host",
            help="The interface to bind to, or unix://PATH for a Unix socket.",
            envvar=("FLASK_RUN_HOST",),
        ),
    )
    uds: str | None = field(
        default=None,
        metadata=_opt("--uds", help="Serve on this Unix socket instead (like --host unix://PATH)."),
    )
    port: int = field(
        default=5000,
        metadata=_opt(
            "-p",
            "--port",
            help="The port to bind to (0 picks a free one).",
            envvar=("FLASK_RUN_PORT",),
            min=0,
            max=65535,
        ),
    )
    debug: bool = field(
        default=True,
        metadata=_opt(
            "--debug/--no-debug",
            help="Debug mode: turns on the reloader and the debugger. On by default.",
            envvar=("FLASK_DEBUG",),
        ),
    )
    reload: bool | None = field(
        default=None,
        metadata=_opt(
            "--reload/--no-reload",
            help="Restart the app when its code changes. Follows --debug.",
            envvar=("FLASK_RUN_RELOAD",),
        ),
    )
    debugger: bool | None = field(
        default=None,
        metadata=_opt(
            "--debugger/--no-debugger",
            help="Serve the interactive werkzeug debugger. Follows --debug.",
            envvar=("FLASK_RUN_DEBUGGER",),
        ),
    )
    livereload: bool | None = field(
        default=None,
        metadata=_opt(
            "--livereload/--no-livereload",
            help="Reload open browser tabs when the app changes (CSS in place). Follows --debug.",
        ),
    )
    extra_files: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "--extra-files",
            help=f"Extra files that trigger a restart, separated by {os.pathsep!r}; repeatable.",
            envvar=("FLASK_RUN_EXTRA_FILES",),
            split=True,
        ),
    )
    exclude_patterns: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "--exclude-patterns",
            help=f"fnmatch patterns of files to ignore, separated by {os.pathsep!r}; repeatable.",
            envvar=("FLASK_RUN_EXCLUDE_PATTERNS",),
            split=True,
        ),
    )
    reload_include: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "--reload-include",
            help="Glob of files whose change restarts the app (besides *.py and .env), e.g. "
            f"'*.toml' or 'config/*.yaml'; separated by {os.pathsep!r}, repeatable.",
            split=True,
        ),
    )
    reload_exclude: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "--reload-exclude",
            help="Glob of files to ignore, e.g. 'data/*' or '*.csv'; separated by "
            f"{os.pathsep!r}, repeatable.",
            split=True,
        ),
    )
    env_file: str | None = field(
        default=None,
        metadata=_opt(
            "-e",
            "--env-file",
            help="Load environment variables from this file (python-dotenv), like flask's -e.",
            type="path",
        ),
    )
    reloader_type: ReloaderType = field(
        default="auto",
        metadata=_opt(
            "--reloader-type",
            help="'watchdog' (inotify), 'stat' (polling: Docker and network mounts) or 'auto'.",
            choices=("auto", "watchdog", "stat"),
        ),
    )
    graceful_timeout: float = field(
        default=5.0,
        metadata=_opt(
            "--graceful-timeout",
            help="Seconds an old app process may spend finishing its requests on a restart.",
            min=0.0,
        ),
    )
    debounce: float = field(
        default=0.05,
        metadata=_opt(
            "--debounce",
            help="Seconds of quiet after a file change before restarting (bursts coalesce).",
            min=0.0,
            max=5.0,
        ),
    )
    standby: bool = field(
        default=True,
        metadata=_opt(
            "--standby/--no-standby",
            help="Keep a warm app process ready, so a restart imports only your code (~0.1 s).",
        ),
    )
    patch: bool = field(
        default=True,
        metadata=_opt(
            "--patch/--no-patch",
            help="Serve an edit inside function bodies from a fresh copy of the loaded app "
            "with the new code swapped in, when that is provably the same as a restart; "
            "else restart.",
            envvar=("GEVENTDEV_PATCH",),
        ),
    )
    debugger_remote: bool = field(
        default=False,
        metadata=_opt(
            "--debugger-remote/--no-debugger-remote",
            help="Let non-loopback clients use the debugger console, PIN entry and live reload"
            " (dangerous).",
        ),
    )
    cert: str | None = field(
        default=None,
        metadata=_opt(
            "--cert",
            help="TLS certificate file, or 'adhoc' for a throwaway self-signed one (needs the "
            "'cryptography' package: pip install 'geventdev[tls]').",
            envvar=("FLASK_RUN_CERT",),
        ),
    )
    key: str | None = field(
        default=None,
        metadata=_opt(
            "--key", help="TLS private key file, with --cert FILE.", envvar=("FLASK_RUN_KEY",)
        ),
    )
    header_timeout: float = field(
        default=10.0,
        metadata=_opt(
            "--header-timeout",
            help="Seconds a client may take to send a request's line and headers (slowloris).",
            min=0.1,
        ),
    )
    keepalive_timeout: float = field(
        default=15.0,
        metadata=_opt(
            "--keepalive-timeout",
            help="Seconds an idle keep-alive connection stays open between requests.",
            min=0.1,
        ),
    )
    body_timeout: float = field(
        default=30.0,
        metadata=_opt(
            "--body-timeout",
            help="Seconds of silence allowed while reading a request body.",
            min=0.1,
        ),
    )
    access_log: bool = field(
        default=True,
        metadata=_opt(
            "--access-log/--no-access-log",
            help="Log each request (the 'werkzeug' logger, as under flask run).",
        ),
    )
    log_level: str | None = field(
        default=None,
        metadata=_opt(
            "--log-level",
            help="Level of the 'geventdev' and 'werkzeug' loggers (uvicorn's names). Default: "
            "info, unless the app or --log-config sets one.",
            choices=LOG_LEVELS,
        ),
    )
    log_config: str | None = field(
        default=None,
        metadata=_opt(
            "--log-config",
            help="A logging config file: .json or .yaml (logging.config.dictConfig), else .ini "
            "(fileConfig); applied in the monitor and in every app process, before the app loads.",
            type="path",
        ),
    )
    pool_size: int = field(
        default=10_000,
        metadata=_opt(
            "--pool-size", help="Most connections served at once (the gevent pool).", min=1
        ),
    )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"Invalid port {self.port}: use a number from 0 to 65535.")
        if self.reloader_type not in ("auto", "watchdog", "stat"):
            raise ValueError(f"Invalid reloader type {self.reloader_type!r}.")
        if self.log_level is not None and self.log_level not in LOG_LEVELS:
            raise ValueError(f"Invalid log level {self.log_level!r}: use one of {LOG_LEVELS}.")
        if self.uds is not None and self.host.startswith(UNIX_SCHEME):
            raise ValueError("Got --uds and --host unix://...: pick one.")

    @property
    def unix_socket(self) -> str | None:
        """The Unix socket path to serve on (``--uds PATH`` or ``--host unix://PATH``), if any."""
        if self.uds:
            return os.path.abspath(self.uds)
        if self.host.startswith(UNIX_SCHEME):
            return os.path.abspath(self.host[len(UNIX_SCHEME) :])
        return None

    @property
    def use_reloader(self) -> bool:
        """Restart on code changes: explicit --reload/--no-reload, else follow debug."""
        return self.debug if self.reload is None else self.reload

    @property
    def use_debugger(self) -> bool:
        """Wrap the app in werkzeug's debugger: explicit flag, else follow debug."""
        return self.debug if self.debugger is None else self.debugger

    @property
    def use_livereload(self) -> bool:
        """Live reload in the browser: explicit flag, else follow debug."""
        return self.debug if self.livereload is None else self.livereload

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Config:
        data = json.loads(text)
        for f in dataclasses.fields(cls):
            if isinstance(data.get(f.name), list):
                data[f.name] = tuple(data[f.name])
        return cls(**data)
