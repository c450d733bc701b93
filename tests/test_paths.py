"""One path policy, library vs project, from sysconfig (issue 16, item 10).

With the OS's Python (``sys.base_prefix == "/usr"``) a project in ``/usr/src/app``, a common
Docker ``WORKDIR``, is the user's code: the watcher watches it, the standby never imports it ahead,
the blocking alarm shows its frames. The pure tests use a fake Debian-like layout computed by the
real ``sysconfig`` with ``/usr`` as the base; the end-to-end tests serve a project whose path starts
with the interpreter's base prefix and edit it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HELLO_APP, DevServer, geventdev_env, write

from geventdev.app import blocking, diagnose
from geventdev.monitor.watch import ChangeFilter
from geventdev.paths import OWN_DIR, Layout, layout, library_dirs

ROOT = Path(__file__).resolve().parent.parent
USR = {"base": "/usr", "platbase": "/usr", "installed_base": "/usr", "installed_platbase": "/usr"}
LOCAL = {k: "/usr/local" for k in USR}


def debian_layout(venv_prefix: str | None = None) -> Layout:
    """The OS's Python on Debian/Ubuntu: stdlib in /usr/lib/python3.X, pip's packages in
    /usr/local/lib/python3.X/dist-packages, apt's in /usr/lib/python3/dist-packages."""
    schemes = [sysconfig.get_paths("posix_prefix", vars=USR)]
    schemes.append(sysconfig.get_paths("posix_prefix", vars=LOCAL))
    if venv_prefix:
        venv_vars = {k: venv_prefix for k in USR}
        schemes.insert(0, sysconfig.get_paths("posix_prefix", vars=venv_vars))
    return Layout.from_paths(schemes, ["/usr/lib/python3/dist-packages"], venv_prefix)


def test_a_project_under_usr_src_is_the_project() -> None:
    policy = debian_layout()
    version = sysconfig.get_python_version()
    assert policy.is_project("/usr/src/app/app.py")
    assert policy.is_project("/usr/src/app/templates/index.html")
    assert policy.is_project("/usr/lib/python3-project/app.py")  # a prefix of a name is not a dir
    for library in (
        f"/usr/lib/python{version}/json/__init__.py",
        f"/usr/lib/python{version}/lib-dynload/_ssl.so",
        f"/usr/local/lib/python{version}/site-packages/flask/app.py",
        "/usr/lib/python3/dist-packages/requests/api.py",
    ):
        assert policy.is_library(library) and not policy.is_project(library), library
    assert policy.is_stdlib(f"/usr/lib/python{version}/json/__init__.py")
    assert not policy.is_stdlib("/usr/lib/python3/dist-packages/requests/api.py")
    assert not policy.is_project(os.path.join(OWN_DIR, "paths.py"))


def test_a_virtualenv_inside_the_project_is_library() -> None:
    policy = debian_layout(venv_prefix="/usr/src/app/.venv")
    version = sysconfig.get_python_version()
    assert policy.is_project("/usr/src/app/app.py")
    assert policy.is_library(f"/usr/src/app/.venv/lib/python{version}/site-packages/flask/app.py")
    assert policy.is_library("/usr/src/app/.venv/bin/flask")
    # site-packages sits inside the stdlib directory in a plain install: it is not the stdlib
    site_in_stdlib = f"/usr/lib/python{version}/site-packages/x.py"
    assert not Layout.from_paths(
        [{"stdlib": f"/usr/lib/python{version}"}], [f"/usr/lib/python{version}/site-packages"]
    ).is_stdlib(site_in_stdlib)


def test_this_interpreter_and_every_user_share_the_policy(tmp_path: Path) -> None:
    assert layout().is_library(os.path.realpath(os.__file__))
    assert layout().is_library(os.path.realpath(pytest.__file__))
    assert layout().is_stdlib(os.path.realpath(os.__file__))
    assert layout().is_project(str(tmp_path / "app.py"))
    # the watcher, the standby split, the blocking alarm and the diagnosis draw the same line
    assert ChangeFilter().ignored_prefixes == library_dirs()
    assert set(library_dirs()) <= set(blocking._NOT_APP)
    assert diagnose._is_library_module(os) and not diagnose._is_library_module(pytest)


def test_the_watcher_watches_a_project_under_the_base_prefix() -> None:
    inside = os.path.join(os.path.realpath(sys.base_prefix), "src", "app")
    assert ChangeFilter().classify(os.path.join(inside, "app.py")) == "restart"
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    assert ChangeFilter().classify(os.path.join(stdlib, "x.py")) is None


def serve_and_reload(server: DevServer, project: Path) -> None:
    server.wait_for_text("/", "hello v1", timeout=30)
    text = (project / "app.py").read_text()
    # a new size: a same-size save within the second is issue 16's item 1, not this one
    write(project / "app.py", text.replace("hello v1", "hello, v2"))
    server.wait_for_text("/", "hello, v2")
    server.wait_for_log(" * Detected change in ")


@pytest.fixture
def under_base_prefix() -> Iterator[Path]:
    """A project directory inside this interpreter's ``sys.base_prefix`` (pyenv, /usr, ...)."""
    parent = Path(os.path.realpath(sys.base_prefix)) / "src"
    created = not parent.exists()
    try:
        parent.mkdir(exist_ok=True)
        project = Path(tempfile.mkdtemp(prefix="geventdev-test-", dir=parent))
    except OSError as exc:
        pytest.skip(f"cannot write under sys.base_prefix {sys.base_prefix}: {exc}")
    try:
        yield project
    finally:
        shutil.rmtree(project, ignore_errors=True)
        if created:
            shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.e2e
def test_a_project_under_the_base_prefix_is_watched_and_reloaded(
    under_base_prefix: Path, tmp_path: Path
) -> None:
    project = under_base_prefix
    write(project / "app.py", HELLO_APP)
    env = geventdev_env()
    env.pop("PYTHONDONTWRITEBYTECODE")
    argv = [sys.executable, "-m", "geventdev", "app.py", "--port", "0"]
    server = DevServer(project, tmp_path / "server-0.log", argv, env)
    try:
        serve_and_reload(server, project)
    finally:
        server.stop()


def os_python() -> str | None:
    """Debian's own interpreter, whose ``sys.base_prefix`` is ``/usr``."""
    for candidate in ("/usr/bin/python3",):
        if not os.access(candidate, os.X_OK):
            continue
        probe = [candidate, "-c", "import sys, venv; print(sys.base_prefix)"]
        found = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        if found.returncode == 0 and found.stdout.strip() == "/usr":
            return candidate
    return None


@pytest.fixture
def usr_src_project() -> Iterator[Path]:
    try:
        project = Path(tempfile.mkdtemp(prefix="geventdev-test-", dir="/usr/src"))
    except OSError as exc:
        pytest.skip(f"cannot write /usr/src: {exc}")
    try:
        yield project
    finally:
        shutil.rmtree(project, ignore_errors=True)


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_the_os_python_reloads_a_project_in_usr_src(usr_src_project: Path, tmp_path: Path) -> None:
    """The Docker case exactly: the OS's Python (in a venv, base prefix /usr), project in
    /usr/src/<name>."""
    python = os_python()
    if python is None:
        pytest.skip("no OS Python with sys.base_prefix == '/usr' (/usr/bin/python3) here")
    env_dir = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(env_dir)], check=True, timeout=60)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    pip += ["--disable-pip-version-check", "-e", str(ROOT)]
    subprocess.run(pip, check=True, timeout=150)
    project = usr_src_project
    write(project / "app.py", HELLO_APP)
    env = geventdev_env()
    env.pop("PYTHONDONTWRITEBYTECODE")
    argv = [str(env_dir / "bin" / "python"), "-m", "geventdev", "app.py", "--port", "0"]
    server = DevServer(project, tmp_path / "server-0.log", argv, env)
    try:
        serve_and_reload(server, project)
    finally:
        server.stop()
