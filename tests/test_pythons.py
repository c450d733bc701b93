"""Every declared Python passes (issue 16, item 12): ``requires-python >= 3.10``, so 3.10 to 3.13.

This interpreter runs the whole suite; each other available version runs a defined subset in a
fresh virtualenv made with it, with the dependencies pip picks for that version (3.10 gets
watchdog 6, whose typing broke ``mypy --strict``): ``mypy --strict``, the unit tier (discovery,
live reload, the restart plan, the watcher's filter, the path policy, patching) and a few
end-to-end reload tests (code edit, template edit, patching and the pristine copy it forks
workers from, live reload's sources, Flask's documented patterns, a project under the base
prefix). A version that is not installed is skipped, and the skip says where we looked.
Interpreters are found in pyenv's versions directory (``$PYENV_ROOT``, default ``~/.pyenv``),
then on ``PATH`` as ``python3.X``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT

VERSIONS = ("3.10", "3.11", "3.12", "3.13")
SUBSET = [
    "tests/test_loader.py",
    "tests/test_livereload.py",
    "tests/test_livereload_sources.py",
    "tests/test_supervisor.py",
    "tests/test_watcher.py",
    "tests/test_paths.py",
    "tests/test_patch.py",
    "tests/test_patch_live.py",
    "tests/test_pristine.py",
    "tests/test_routing.py",
    "tests/test_gate.py::test_the_standby_loads_up_to_the_file_edited_last",
    "tests/test_gate.py::test_a_module_the_project_loads_by_path_is_read_again",
    "tests/test_reload.py::test_edit_in_a_subpackage_restarts",
    "tests/test_reload.py::test_template_edit_needs_no_restart",
    "tests/test_flask_patterns.py::test_documented_patterns_serve_as_flask_serves_them",
]
#: Seconds any one step (venv, install, mypy, the subset) may take.
STEP_TIMEOUT = 300
#: One pip at a time: three at once took 100 s each here, one alone 19 s (the index and the
#: cache are shared); mypy and the tests of one version overlap the next one's install.
INSTALLING = threading.Lock()
#: It makes its own venv from the OS's Python: once per suite is enough.
OS_PYTHON_TEST = "tests/test_paths.py::test_the_os_python_reloads_a_project_in_usr_src"
#: The subset's needs, from the test extras (pyproject.toml keeps the version floors).
SUBSET_EXTRAS = (
    "pytest",
    "pytest-timeout",
    "requests",
    "mypy",
    "hypothesis",
    "h11",
    "asgiref",
    "simple-websocket",
)


def pyenv_root() -> Path:
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def find_python(version: str) -> str | None:
    """The newest pyenv build of ``version`` (``3.10`` -> ``3.10.13``), else ``python3.10``."""
    builds = []
    for path in (pyenv_root() / "versions").glob(f"{version}.*"):
        match = re.fullmatch(re.escape(version) + r"\.(\d+)", path.name)
        if match and (path / "bin" / "python").exists():
            builds.append((int(match.group(1)), path / "bin" / "python"))
    if builds:
        return str(max(builds)[1])
    return shutil.which(f"python{version}")


def subset_requirements() -> list[str]:
    """The subset's requirements as pyproject.toml's test extras spell them (no tomllib: the
    runner may be 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^test = \[(.*?)^\]", text, re.M | re.S)
    assert block, "pyproject.toml has no test extras"
    specs = re.findall(r'"([^"]+)"', block.group(1))
    by_name = {re.split(r"[<>=!~\[]", s, maxsplit=1)[0].lower(): s for s in specs}
    return [by_name.get(name, name) for name in SUBSET_EXTRAS]


@dataclass
class Run:
    """One version's pipeline: which step failed (if any), its output, and the seconds taken."""

    python: str
    failed: str | None = None
    output: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def run_subset(python: str, version: str, work: Path) -> Run:
    """venv, install, ``mypy --strict``, the subset: each step timed, the first failure kept."""
    env_dir = work / f"venv-{version}"
    venv_python = str(env_dir / "bin" / "python")
    # this interpreter's pip installs into the new venv (pip >= 22.3's --python): a venv made
    # without its own pip takes 0.1 s instead of ~13 s
    pip = [sys.executable, "-m", "pip", "--python", venv_python, "install", "--quiet"]
    pip += ["--disable-pip-version-check", "--no-compile"]
    inner = [venv_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUBSET]
    inner += ["--basetemp", str(work / f"inner-{version}"), "--deselect", OS_PYTHON_TEST]
    steps = {
        "venv": [python, "-m", "venv", "--without-pip", str(env_dir)],
        "install": [*pip, "-e", str(ROOT), *subset_requirements()],
        "mypy --strict": [venv_python, "-m", "mypy", "--cache-dir", str(work / f"mypy-{version}")],
        "pytest": inner,
    }
    run = Run(python)
    for name, argv in steps.items():
        started = time.monotonic()
        try:
            with INSTALLING if name == "install" else contextlib.nullcontext():
                done = subprocess.run(
                    argv, cwd=ROOT, capture_output=True, text=True, timeout=STEP_TIMEOUT
                )
        except subprocess.TimeoutExpired as exc:
            run.failed, run.output = name, f"timed out after {exc.timeout} s"
            return run
        run.timings[name] = time.monotonic() - started
        run.output = (done.stdout + done.stderr)[-6000:]
        if done.returncode != 0:
            run.failed = name
            return run
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every other available version at once: the steps mostly wait (pip, servers), so three
    versions take little more than one (measured in the README)."""
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    pythons = {v: find_python(v) for v in VERSIONS if v != current}
    found = {v: p for v, p in pythons.items() if p is not None}
    work = tmp_path_factory.mktemp("pythons")
    with ThreadPoolExecutor(max_workers=max(len(found), 1)) as pool:
        futures = {v: pool.submit(run_subset, p, v, work) for v, p in found.items()}
        return {v: f.result() for v, f in futures.items()}


@pytest.mark.e2e
@pytest.mark.timeout(4 * STEP_TIMEOUT)
@pytest.mark.parametrize("version", VERSIONS)
def test_the_subset_passes_on(version: str, runs: dict[str, Run]) -> None:
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        pytest.skip(f"Python {version} runs the whole suite (this interpreter)")
    if version not in runs:
        pytest.skip(
            f"Python {version} is not installed (looked in {pyenv_root() / 'versions'} and for"
            f" python{version} on PATH)"
        )
    run = runs[version]
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in run.timings.items())
    print(f"Python {version} ({run.python}): {timings}")
    assert run.failed is None, f"{run.failed} failed on Python {version}:\n{run.output}"
