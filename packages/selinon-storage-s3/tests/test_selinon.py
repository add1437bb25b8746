"""The adapter inside Selinon: Selinon 1.x YAML, the command line and the storage pool (forked workers are a
drill of test_reliability.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
from conftest import Busy, Endpoint
from selinon_storage_s3 import S3Storage

from selinon import ConfigurationError, StorageError, StoragePool, config
from selinon.registry import LegacyImportWarning
from selinon.testing import exception_text, free_port, planted_secret

# The block Selinon 1.x users have, as it is; the tests change only the bucket (it must be new) and add
# endpoint_url (1.x users on AWS do not set it) to reach the test server.
LEGACY_BLOCK = """\
storages:
  - name: 'MyS3Storage'
    classname: 'S3Storage'
    import: 'selinon.storages.s3'
    configuration: {bucket: 'my-bucket-name', aws_access_key_id: 'AAAAAAAAAAAAAAAAAAAA', aws_secret_access_key: 'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB', region_name: 'us-east-1'}
"""
TASKS = """\
tasks:
  - name: 'MyTask'
    import: 'myapp.tasks'
    storage: 'MyS3Storage'
"""


def nodes_yaml(tmp_path: Path, s3: Endpoint, bucket: str, legacy_import: bool = True, endpoint: str = "") -> Path:
    block = LEGACY_BLOCK.replace("my-bucket-name", bucket)
    block = block.replace("region_name:", f"endpoint_url: '{endpoint or s3.url}', region_name:")
    if not legacy_import:
        block = block.replace("    import: 'selinon.storages.s3'\n", "")
    path = tmp_path / f"nodes-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(block + TASKS)
    return path


def test_selinon_1x_block_runs_as_it_is(tmp_path: Path, s3: Endpoint, bucket: str) -> None:
    StoragePool.configure(config.load(nodes_yaml(tmp_path, s3, bucket)))
    with pytest.warns(LegacyImportWarning, match="selinon.storages.s3") as caught:
        record_id = StoragePool.set({"arg": 1}, "MyFlow", "MyTask", "task-1", {"result": [1, 2]})
    assert len([w for w in caught if issubclass(w.category, LegacyImportWarning)]) == 1
    assert record_id == "task-1"
    assert StoragePool.retrieve("MyFlow", "MyTask", "task-1") == {"result": [1, 2]}
    assert isinstance(StoragePool.get_connected_storage("MyS3Storage"), S3Storage)
    # The bucket did not exist: it was created, in us-east-1 (no LocationConstraint).
    assert s3.client("us-east-1").get_bucket_location(Bucket=bucket)["LocationConstraint"] in (None, "", "us-east-1")
    assert s3.keys(bucket) == ["task-1"]


def test_selinon_1x_block_without_import_line(tmp_path: Path, s3: Endpoint, bucket: str) -> None:
    StoragePool.configure(config.load(nodes_yaml(tmp_path, s3, bucket, legacy_import=False)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LegacyImportWarning)
        StoragePool.set(None, "MyFlow", "MyTask", "task-2", "done")
        assert StoragePool.retrieve("MyFlow", "MyTask", "task-2") == "done"


def test_classname_s3_is_the_same_adapter(tmp_path: Path, s3: Endpoint, bucket: str) -> None:
    path = nodes_yaml(tmp_path, s3, bucket, legacy_import=False)
    path.write_text(path.read_text().replace("classname: 'S3Storage'", "classname: 'S3'"))
    StoragePool.configure(path)
    assert type(StoragePool.get_connected_storage("MyS3Storage")) is S3Storage


def selinon(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "selinon", *argv], capture_output=True, text=True, timeout=120)


def test_storages_check(tmp_path: Path, s3: Endpoint, bucket: str) -> None:
    done = selinon("storages", "check", "-c", str(nodes_yaml(tmp_path, s3, bucket)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MyS3Storage" in done.stdout and "ok" in done.stdout
    assert "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB" not in done.stdout + done.stderr
    assert s3.keys(bucket) == []  # the probe record was deleted


def test_storages_check_closed_port(tmp_path: Path, s3: Endpoint, bucket: str) -> None:
    path = nodes_yaml(tmp_path, s3, bucket, endpoint=f"http://127.0.0.1:{free_port()}")
    done = selinon("storages", "check", "-c", str(path), "--json")
    assert done.returncode == 1
    (result,) = json.loads(done.stdout)
    assert result["status"] == "failed" and "cannot connect to S3" in result["detail"]
    assert "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB" not in done.stdout + done.stderr


def test_plugins_list() -> None:
    done = selinon("plugins", "list", "--json")
    assert done.returncode == 0, done.stderr
    ours = {p["classname"]: p for p in json.loads(done.stdout) if p["distribution"] == "selinon-storage-s3"}
    assert set(ours) == {"S3Storage", "S3"}
    assert {p["target"] for p in ours.values()} == {"selinon_storage_s3:S3Storage"}
    assert {p["status"] for p in ours.values()} == {"installed"}


def test_configuration_errors_hide_the_secret(tmp_path: Path, s3: Endpoint) -> None:
    secret = f"planted-{uuid.uuid4().hex}"
    path = tmp_path / "bad.yaml"
    path.write_text(
        "storages:\n  - name: Bad\n    classname: S3Storage\n"
        f"    configuration: {{bucket: 'Bad_Bucket', aws_access_key_id: 'A', aws_secret_access_key: '{secret}'}}\n"
    )
    StoragePool.configure(path)
    with pytest.raises(ConfigurationError, match="not a valid S3 bucket name") as raised:
        StoragePool.get_storage("Bad")
    assert secret not in str(raised.value)


def test_pool_retries_an_overloaded_server(tmp_path: Path, busy_endpoint: str) -> None:
    """S3 answering 503 SlowDown: the pool tries again within the storage's `retry:` policy, then gives up."""
    path = tmp_path / "busy.yaml"
    path.write_text(
        "storages:\n  - name: Busy\n    classname: S3Storage\n"
        f"    configuration: {{bucket: 'busy-bucket', endpoint_url: '{busy_endpoint}',"
        " aws_access_key_id: 'A', aws_secret_access_key: 'B'}\n"
        "    retry: {attempts: 3, deadline: 10, backoff: 0.01}\n"
        "tasks:\n  - name: T\n    storage: Busy\n"
    )
    StoragePool.configure(path)
    with pytest.raises(StorageError, match="after 3 attempts.*SlowDown"):
        StoragePool.set(None, "F", "T", "t", 1)
    assert Busy.puts == 3


@pytest.mark.parametrize("userinfo", ["user:{}", "user:{0}@tail-{0}"])
def test_an_endpoint_url_with_credentials_is_refused_without_showing_them(tmp_path: Path, userinfo: str) -> None:
    """botocore never sends a URL's user name and password (requests are signed with the AWS keys), and its
    exceptions show the URL whole: such an endpoint is refused before any request."""
    secret = planted_secret()
    endpoint = f"http://{userinfo.format(secret)}@127.0.0.1:{free_port()}/"
    path = tmp_path / "nodes.yaml"
    path.write_text(
        "storages:\n  - name: S3\n    classname: S3Storage\n"
        f"    configuration: {{bucket: 'creds-bucket', endpoint_url: '{endpoint}', aws_access_key_id: 'A',"
        " aws_secret_access_key: 'B', connect_timeout: 1}\n"
        "tasks:\n  - {name: T, storage: S3}\n"
    )
    StoragePool.configure(path)
    with pytest.raises(ConfigurationError, match="`endpoint_url` holds a user name or password") as raised:
        StoragePool.set(None, "flow", "T", "id", 1)
    assert secret not in exception_text(raised.value)
    for args in ([], ["--json"]):
        done = selinon("storages", "check", "-c", str(path), *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "`endpoint_url` holds a user name or password" in done.stderr
        assert secret not in done.stdout + done.stderr
