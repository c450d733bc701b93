"""``flask gevent``: the same server as ``geventdev``, as a Flask CLI plugin command.

Registered in the ``flask.commands`` entry-point group under the name ``gevent``; never ``run``,
which would silently replace ``flask run``. ``flask --app X gevent`` takes the app from the group.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from click.core import ParameterSource
from flask.cli import ScriptInfo, pass_script_info

from geventdev.cli.main import CONTEXT, config_options, make_config, serve
from geventdev.monitor.envfiles import without_env_files


@click.command("gevent", context_settings=CONTEXT)
@config_options
@pass_script_info
def command(info: ScriptInfo, /, **params: Any) -> None:
    """Run a development server on gevent: debugger, code reload, real concurrency."""
    ctx = click.get_current_context()
    group = ctx.parent
    # The flask group writes FLASK_DEBUG=0 even when nobody asked for --no-debug; only an explicit
    # choice (flask --debug/--no-debug, FLASK_DEBUG in the environment) turns our default off.
    if (
        group is not None
        and group.get_parameter_source("debug") in (None, ParameterSource.DEFAULT)
        and ctx.get_parameter_source("debug") == ParameterSource.ENVIRONMENT
    ):
        params["debug"] = None
    config = make_config(params.pop("app", None) or info.app_import_path, params)
    sys.exit(serve(config, without_env_files(config.env_file, os.environ)))
