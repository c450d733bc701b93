"""Options map onto the one Config; the monitor side imports no gevent and no app."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from geventdev.cli.main import command, make_config
from geventdev.config import Config
from geventdev.protocol import (
    ENV_CONFIG,
    ENV_CONTROL_FD,
    ENV_LISTEN_FD,
    Handoff,
    Message,
    iter_messages,
)


def parse(*args: str) -> Config:
    ctx = command.make_context("geventdev", list(args))
    params = dict(ctx.params)
    return make_config(params.pop("target"), params)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for key in list(os.environ):
        if key.startswith(("FLASK_", "WERKZEUG_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env / .flaskenv


def test_defaults_are_a_dev_server() -> None:
    config = parse()
    assert (config.host, config.port, config.app) == ("127.0.0.1", 5000, None)
    assert config.debug and config.use_reloader and config.use_debugger


def test_flask_run_flags() -> None:
    config = parse(
        "app.py",
        "-h",
        "0.0.0.0",
        "-p",
        "8000",
        "--no-reload",
        "--extra-files",
        f"a{os.pathsep}b",
        "--extra-files",
        "c",
    )
    assert (config.app, config.host, config.port) == ("app.py", "0.0.0.0", 8000)
    assert not config.use_reloader and config.use_debugger
    assert config.extra_files == ("a", "b", "c")


def test_no_debug_turns_both_off_unless_asked() -> None:
    assert not parse("--no-debug").use_reloader
    assert not parse("--no-debug").use_debugger
    assert parse("--no-debug", "--reload").use_reloader


def test_flask_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_APP", "hello:create_app('x')")
    monkeypatch.setenv("FLASK_RUN_PORT", "7000")
    monkeypatch.setenv("FLASK_RUN_HOST", "::1")
    monkeypatch.setenv("FLASK_DEBUG", "0")
    monkeypatch.setenv("FLASK_RUN_EXCLUDE_PATTERNS", f"*/a/*{os.pathsep}*.tmp")
    config = parse()
    assert config.app == "hello:create_app('x')"
    assert (config.host, config.port, config.debug) == ("::1", 7000, False)
    assert config.exclude_patterns == ("*/a/*", "*.tmp")


def test_app_option_and_argument_agree() -> None:
    assert parse("--app", "x.py").app == "x.py"
    with pytest.raises(click.UsageError):
        parse("a.py", "--app", "b.py")


def test_every_config_field_is_an_option() -> None:
    names = {p.name for p in command.params}
    assert {f.name for f in dataclasses.fields(Config)} <= names


def test_help_shows_the_defaults_it_applies() -> None:
    help_text = " ".join(command.get_help(click.Context(command)).split())
    defaults = Config()
    for name in ("host", "port", "graceful_timeout", "debounce", "header_timeout", "pool_size"):
        assert f"default: {getattr(defaults, name)}" in help_text, name
    assert "default: None" not in help_text and "default: False" not in help_text


def test_config_json_round_trip() -> None:
    config = Config(app="a.py", extra_files=("x", "y"), port=0, debug=False, reload=True)
    assert Config.from_json(config.to_json()) == config


def test_config_validates() -> None:
    with pytest.raises(ValueError, match="Invalid port"):
        Config(port=70000)


def test_handoff_is_popped_from_the_environment() -> None:
    handoff = Handoff(listen_fd=3, control_fd=4, config_json="{}", monitor_pid=1)
    env = handoff.to_environ()
    assert env["WERKZEUG_RUN_MAIN"] == "true" and env["FLASK_RUN_FROM_CLI"] == "true"
    assert Handoff.from_environ(env) == handoff
    assert not {ENV_LISTEN_FD, ENV_CONTROL_FD, ENV_CONFIG} & set(env)
    with pytest.raises(SystemExit, match="started by the geventdev monitor"):
        Handoff.from_environ({})


def test_message_round_trip() -> None:
    message = Message("load_error", {"kind": "exception", "error": "x", "paths": ["/a.py"]})
    assert Message.decode(message.encode()) == message
    with pytest.raises(ValueError):
        Message.decode(b'{"type": "bogus"}')


@pytest.mark.parametrize("line", [b"[]\n", b"null\n", b"3\n", b"{}\n", b"not json\n"])
def test_a_malformed_control_line_ends_the_stream_quietly(line: bytes) -> None:
    good = Message("ready", {"pid": 1}).encode()
    assert list(iter_messages(io.BytesIO(good + line + good))) == [Message("ready", {"pid": 1})]


def test_monitor_side_imports_no_gevent_and_no_flask() -> None:
    code = (
        "import sys, geventdev.cli.main, geventdev.monitor.loop, geventdev.monitor.watch;"
        "import geventdev.monitor.plan;"
        "bad = [m for m in ('gevent', 'flask', 'werkzeug', 'jinja2') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_package_init_is_import_light() -> None:
    code = (
        "import sys; before = set(sys.modules); import geventdev;"
        "added = set(sys.modules) - before - {'geventdev'};"
        "assert not added, added"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_child_patches_before_importing_anything_heavy() -> None:
    import geventdev

    source = (Path(geventdev.__file__).parent / "app" / "main.py").read_text()
    body = [line for line in source.split('"""', 2)[2].splitlines() if line.strip()]
    assert body[:2] == ["from gevent import monkey", "monkey.patch_all()"]
