"""The `selinon` command line: output, exit codes (0 ok, 1 check failed, 2 usage/configuration) and no secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from clikit import run
from conftest import MakeDistribution, adapter_source

import selinon

EXAMPLE = Path(__file__).parents[3] / "examples" / "nodes.yaml"


def test_plugins_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", "list", "--json")
    assert code == 0
    listed = {p["classname"]: p for p in json.loads(out)}
    assert listed["InMemoryStorage"]["distribution"] == "selinon-core"
    assert listed["Filesystem"]["target"] == "selinon.storages.filesystem:Filesystem"
    assert listed["Filesystem"]["status"] == "installed"


def test_plugins_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["CLASSNAME", "DISTRIBUTION", "VERSION", "TARGET", "STATUS"]
    assert any(line.split()[:2] == ["Filesystem", "selinon-core"] for line in lines[1:])


def test_plugins_show(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", "show", "InMemoryStorage", "--json")
    details = json.loads(out)
    assert code == 0 and details["thread_safe"] is True
    assert details["options"] == [
        {"name": "echo", "required": False, "default": False, "secret": False},
        {"name": "json", "required": False, "default": False, "secret": False},
    ]
    code, out, _ = run(capsys, "plugins", "show", "Filesystem")
    assert "path: default None" in out  # the working directory, as in Selinon 1.x


def test_plugins_show_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plugins", "show", "Redis")
    assert code == 2 and out == ""
    assert (
        err
        == "selinon: error: no installed distribution provides classname 'Redis'; install it: pip install selinon-storage-redis\n"
    )


def test_plugins_show_unknown_names_only_what_is_installed(capsys: pytest.CaptureFixture[str]) -> None:
    """With the core alone, the built-ins are what is installed; a first-party adapter that is close to the name
    asked for is suggested with what to install."""
    code, _, err = run(capsys, "plugins", "show", "Nope")
    assert (code, err) == (2, "selinon: error: no installed distribution provides classname 'Nope'; installed: "
                              "Filesystem, InMemoryStorage\n")  # fmt: skip
    code, _, err = run(capsys, "plugins", "show", "Mongo")
    assert (code, err) == (2, "selinon: error: no installed distribution provides classname 'Mongo'; did you mean "
                              "'MongoDB' (not installed: pip install selinon-storage-mongodb)?\n")  # fmt: skip
    code, _, err = run(capsys, "plugins", "show", "postgresql")
    assert "did you mean 'PostgreSQL' (not installed: pip install selinon-storage-postgresql)?" in err
    code, _, err = run(capsys, "plugins", "show", "filesystem")
    assert err.endswith("did you mean 'Filesystem'?\n")


def test_classname_close_to_an_adapter_not_installed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "nodes.yaml"
    config.write_text("storages:\n  - {name: Results, classname: Mongo, configuration: {db_name: d}}\n")
    code, _, err = run(capsys, "storages", "check", "-c", str(config))
    assert (code, err) == (2, f"selinon: error: {config}: storage 'Results': no installed distribution provides "
                              "classname 'Mongo'; did you mean 'MongoDB' (not installed: pip install "
                              "selinon-storage-mongodb)?\n")  # fmt: skip


ACME_SOURCE = '''
from selinon import DataStorage


class Acme(DataStorage):
    """Keeps ``key_prefix + task_id`` records, see :class:`selinon.DataStorage`.

    More about it.
    """

    option_defaults = {"host": "localhost", "port": 7000}

    def __init__(self, host=None, port=None, key_prefix="acme:"):
        pass

    connect = disconnect = is_connected = store = retrieve = lambda *a: None
'''


def test_plugins_show_details(capsys: pytest.CaptureFixture[str], make_distribution: MakeDistribution) -> None:
    """Defaults as the adapter declares them, the summary without reStructuredText markup, the core range as
    people write it."""
    make_distribution(
        "acme-storage", storages={"Acme": "acme:Acme"}, modules={"acme": ACME_SOURCE}, requires=["selinon-core<1,>=0.1"]
    )
    code, out, _ = run(capsys, "plugins", "show", "Acme")
    assert code == 0
    assert "summary:       Keeps `key_prefix + task_id` records, see `selinon.DataStorage`.\n" in out
    assert "requires_core: >=0.1,<1\n" in out
    assert "options:\n  host: default 'localhost'\n  port: default 7000\n  key_prefix: default 'acme:'\n" in out


def test_plugins_check_says_what_to_install_for_a_missing_driver(
    capsys: pytest.CaptureFixture[str], make_distribution: MakeDistribution
) -> None:
    make_distribution(
        "acme-storage",
        storages={"Acme": "acme_adapter:Acme"},
        modules={"acme_adapter": "import acme_driver"},
        requires=["selinon-core>=0.1", "Acme-Driver[fast]<3,>=2.1"],
    )
    code, out, _ = run(capsys, "plugins", "check")
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("Acme "))
    assert row.endswith(
        "broken: ModuleNotFoundError: No module named 'acme_driver'; acme-storage needs it: "
        "pip install 'Acme-Driver[fast]>=2.1,<3'"
    ), row
    assert row.count("broken") == 1


def test_plugins_check_reports_broken_and_exits_1(
    capsys: pytest.CaptureFixture[str], make_distribution: MakeDistribution
) -> None:
    code, out, _ = run(capsys, "plugins", "check", "--json")
    assert code == 0 and {p["status"] for p in json.loads(out)} == {"ok"}
    make_distribution(
        "acme-mixed",
        storages={"AcmeGood": "acme_good:AcmeGood", "AcmeBad": "acme_bad:AcmeBad"},
        modules={"acme_good": adapter_source("AcmeGood"), "acme_bad": "import missing_dependency_of_acme"},
    )
    code, out, _ = run(capsys, "plugins", "check", "--json")
    statuses = {p["classname"]: (p["status"], p["reason"]) for p in json.loads(out)}
    assert code == 1
    assert statuses["AcmeGood"] == ("ok", None)
    assert (
        statuses["AcmeBad"][0] == "broken" and "No module named 'missing_dependency_of_acme'" in statuses["AcmeBad"][1]
    )
    assert statuses["Filesystem"][0] == "ok"


def test_storages_check_example(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "storages", "check", "-c", str(EXAMPLE))
    assert code == 0, err
    rows = [line.split()[:3] for line in out.splitlines()[1:]]
    assert rows == [["Memory", "InMemoryStorage", "ok"], ["Results", "Filesystem", "ok"]]
    assert list(tmp_path.iterdir()) == []  # the probe record was deleted, and the directory made for it too


NO_DELETE_SOURCE = """
from pathlib import Path

from selinon import DataStorage


class NoDelete(DataStorage):
    def __init__(self, log):
        self.log = Path(log)

    def connect(self):
        self.log.touch()

    disconnect = is_connected = lambda self: None

    def store(self, node_args, flow_name, task_name, task_id, result):
        with self.log.open("a") as file:
            file.write(task_id)

    def retrieve(self, flow_name, task_name, task_id):
        return None
"""


def test_storages_check_leaves_no_probe_record_where_it_cannot_delete_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make_distribution: MakeDistribution
) -> None:
    make_distribution(
        "acme-nodelete", storages={"NoDelete": "acme_nodelete:NoDelete"}, modules={"acme_nodelete": NO_DELETE_SOURCE}
    )
    log = tmp_path / "stored.log"
    config = tmp_path / "nodes.yaml"
    config.write_text(f"storages:\n  - {{name: Kept, classname: NoDelete, configuration: {{log: '{log}'}}}}\n")
    code, out, err = run(capsys, "storages", "check", "-c", str(config), "--json")
    assert code == 0, err
    (result,) = json.loads(out)
    assert result["status"] == "ok"
    assert result["detail"] == "connected; no probe record written, since NoDelete cannot delete it"
    assert log.read_text() == ""  # connected, and nothing stored


def test_storages_check_keeps_a_directory_that_existed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "selinon-results").mkdir()
    code, _, err = run(capsys, "storages", "check", "-c", str(EXAMPLE), "--storage", "Results")
    assert code == 0, err
    assert list(tmp_path.iterdir()) == [tmp_path / "selinon-results"]
    assert list((tmp_path / "selinon-results").iterdir()) == []


def test_storages_check_one_storage_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "storages", "check", "-c", str(EXAMPLE), "--storage", "Memory", "--json")
    (result,) = json.loads(out)
    assert code == 0 and result["storage"] == "Memory" and result["status"] == "ok" and result["ms"] >= 0


def test_storages_check_failure_exits_1_without_secret(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make_distribution: MakeDistribution
) -> None:
    make_distribution("acme-fail", storages={"Acme": "acme_fail:Acme"}, modules={"acme_fail": adapter_source("Acme")})
    config = tmp_path / "nodes.yaml"
    config.write_text(
        "storages:\n"
        "  - {name: Good, classname: InMemoryStorage}\n"
        "  - {name: Bad, classname: Acme, configuration: {greeting: fail, password: planted-Zq81-secret}}\n"
    )
    code, out, err = run(capsys, "storages", "check", "-c", str(config))
    assert code == 1
    assert "planted-Zq81-secret" not in out + err
    bad = next(line for line in out.splitlines() if line.startswith("Bad"))
    assert "failed" in bad and "connect: RuntimeError: refused with password ***" in bad


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["storages", "check"],
            "selinon: error: Missing option '-c' / '--config'; see 'selinon storages check --help'",
        ),
        (["nosuch"], "selinon: error: No such command 'nosuch'; see 'selinon --help'"),
        (
            ["storages", "check", "-c", "/nonexistent/nodes.yaml"],
            "selinon: error: /nonexistent/nodes.yaml: cannot read the file",
        ),
    ],
)
def test_usage_and_configuration_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(expected) and err.count("\n") == 1
    assert "Traceback" not in err


def test_storages_check_unknown_storage_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "storages", "check", "-c", str(EXAMPLE), "--storage", "Nope")
    assert code == 2 and "no storage named 'Nope'; configured: Memory, Results" in err


def test_version_lists_core(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.splitlines()[0] == f"selinon-core {selinon.__version__}"
    code, out, _ = run(capsys, "version", "--json")
    assert json.loads(out)["selinon-core"] == selinon.__version__


def test_python_dash_m_selinon(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "selinon", "storages", "check", "-c", str(EXAMPLE)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Results" in done.stdout


def test_plugins_list_imports_no_adapter_module_nor_yaml() -> None:
    script = (
        "import sys\n"
        "from selinon.cli import main\n"
        "try:\n    main(['plugins', 'list'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('yaml', 'sqlalchemy', 'redis', 'pymongo', 'boto3', 'botocore', 'selinon.storages.filesystem',"
        " 'selinon.storages.memory', 'selinon.pool')\n"
        "print('IMPORTED', sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "IMPORTED []"


def test_plugins_new_takes_a_classname(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "plugins", "new", "mysql", "--classname", "MySQL", "--dir", str(tmp_path))
    assert code == 0, err
    assert "classname MySQL in selinon_storage_mysql" in out
    project = tmp_path / "selinon-storage-mysql"
    source = (project / "src" / "selinon_storage_mysql" / "__init__.py").read_text()
    assert "class MySQL(DataStorage):" in source
    for option in ("connect_timeout", "transient_errors", "secret_options"):
        assert option in source
    assert 'MySQL = "selinon_storage_mysql:MySQL"' in (project / "pyproject.toml").read_text()
    assert "class TestMySQLDrills(StorageDrills):" in (project / "tests" / "test_contract.py").read_text()
    code, _, err = run(capsys, "plugins", "new", "other", "--classname", "2Fast", "--dir", str(tmp_path))
    assert (
        code == 2 and err == "selinon: error: --classname '2Fast' is not a Python class name; use one such as 'MySQL'\n"
    )
    assert not (tmp_path / "selinon-storage-other").exists()
