"""The example flow end to end on PostgreSQL (selinon-storage-postgresql, server on 127.0.0.1:5432, database
`test`): results and errors land in the database and `selinon results` reads them back.

Skipped locally when the package or the server is missing; with CI=true that is a failure.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from selinon.cli import main
from selinon.testing import require_service
from selinon.testing.services import in_ci

try:
    import sqlalchemy as sa
    from selinon_storage_postgresql import SqlStorage
except ImportError as exc:
    message = f"selinon-storage-postgresql is not installed ({exc}); pip install -e packages/selinon-storage-postgresql"
    if in_ci():
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)

pytestmark = pytest.mark.e2e

URL = os.environ.get("SELINON_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test")
FLOW = Path(__file__).parents[4] / "examples" / "flow"


@pytest.fixture
def nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example's nodes-postgresql.yaml, on a table of this test's own, dropped afterwards."""
    url = sa.make_url(URL)
    require_service("PostgreSQL", url.host or "127.0.0.1", url.port or 5432, "start the machine's PostgreSQL service")
    monkeypatch.setattr(sys, "path", [str(FLOW), *sys.path])
    table = f"selinon_flow_test_{uuid.uuid4().hex[:12]}"
    document = yaml.safe_load((FLOW / "nodes-postgresql.yaml").read_text())
    document["storages"][0]["configuration"] = {"connection_string": URL, "table_name": table}
    path = tmp_path / "nodes.yaml"
    path.write_text(yaml.safe_dump(document))
    yield path
    engine = sa.create_engine(SqlStorage(connection_string=URL)._url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    finally:
        engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_example_flow_on_postgresql(capsys: pytest.CaptureFixture[str], nodes: Path) -> None:
    order = {"order": 9, "items": [{"sku": "lamp", "price": 30, "quantity": 2}]}
    config = ["-c", str(nodes), "-c", str(FLOW / "flows.yaml")]
    code, out, err = run(capsys, "run", *config, "orderFlow", "--node-args", json.dumps(order), "--json")
    assert code == 0, err
    tasks = {t["task"]: t for t in json.loads(out)["tasks"]}
    assert set(tasks) == {"ValidateOrder", "ReserveStock", "StandardShipping", "Confirm"}
    assert tasks["ReserveStock"]["tries"] == 2
    code, out, _ = run(
        capsys, "results", "get", "-c", str(nodes), "StandardShipping", tasks["StandardShipping"]["task_id"]
    )
    assert code == 0 and json.loads(out) == {"carrier": "post", "days": 4, "cost": 0.0}
    code, out, _ = run(capsys, "results", "get", "-c", str(nodes), "Confirm", tasks["Confirm"]["task_id"])
    assert json.loads(out)["message"] == "2 item(s) reserved; shipping by post (0.00), arriving in 4 days"

    code, out, _ = run(capsys, "run", *config, "orderFlow", "--node-args", '{"order": 10}', "--json")
    report = json.loads(out)
    failed = report["tasks"][0]
    assert code == 1 and failed["state"] == "failed" and failed["error_record"] == "stored"
    code, out, err = run(capsys, "results", "get", "-c", str(nodes), "ValidateOrder", failed["task_id"])
    assert code == 1 and json.loads(out)["error"]["message"] == "order 10 has no items"
