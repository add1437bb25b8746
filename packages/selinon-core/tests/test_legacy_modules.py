"""Selinon 1.x's storage modules (``selinon.storages.redis``...) on a core without the adapters installed."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from typing import Any

import pytest
from conftest import MakeDistribution, adapter_source

from selinon import registry
from selinon.errors import PluginError, StorageError
from selinon.storages.legacy import MODULES, AdapterNotInstalled

# Selinon 1.4's wheel has these adapter modules under selinon/storages/ (memory and filesystem are the core's own).
SELINON_1_MODULES = {
    "selinon.storages.postgresql": ("PostgreSQL", "selinon-storage-postgresql"),
    "selinon.storages.postgresql.adapter": ("PostgreSQL", "selinon-storage-postgresql"),
    "selinon.storages.postgresql.models": ("Result", "selinon-storage-postgresql"),
    "selinon.storages.redis": ("Redis", "selinon-storage-redis"),
    "selinon.storages.mongodb": ("MongoDB", "selinon-storage-mongodb"),
    "selinon.storages.s3": ("S3", "selinon-storage-s3"),
}


def test_every_selinon_1_adapter_module_is_there() -> None:
    assert set(MODULES) == set(SELINON_1_MODULES)


@pytest.mark.parametrize(("module", "expected"), SELINON_1_MODULES.items())
def test_missing_adapter_is_one_line_naming_the_pip_install(module: str, expected: tuple[str, str]) -> None:
    classname, distribution = expected
    shim = importlib.import_module(module)  # the module itself always imports
    with pytest.raises(ImportError) as caught:
        exec(f"from {module} import {classname}", {})
    assert isinstance(caught.value, AdapterNotInstalled)
    message = str(caught.value)
    assert message.endswith(f"pip install {distribution}") and "\n" not in message
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        shim.Nope  # noqa: B018


def test_names_lead_to_the_adapter_package_and_import_it_only_when_used(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "selinon-storage-redis",
        storages={"Redis": "selinon_storage_redis:Redis"},
        modules={"selinon_storage_redis": adapter_source("Redis")},
    )
    sys.modules.pop("selinon.storages.redis", None)
    import selinon.storages.redis as shim

    assert "selinon_storage_redis" not in sys.modules
    from selinon.storages.redis import Redis

    adapter = importlib.import_module("selinon_storage_redis")
    assert Redis is adapter.Redis and shim.Redis is adapter.Redis

    class Subclass(Redis):  # a 1.x project's own storage
        pass

    assert Subclass().greeting == "hello"


def test_importing_the_modules_imports_no_adapter_nor_driver() -> None:
    code = (
        "import sys, selinon.storages.postgresql.adapter, selinon.storages.postgresql.models, "
        "selinon.storages.redis, selinon.storages.mongodb, selinon.storages.s3\n"
        "heavy = {'sqlalchemy', 'redis', 'pymongo', 'boto3', 'botocore'} | {p for p, _, _ in "
        "selinon.storages.legacy.MODULES.values()}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_legacy_import_line_of_an_existing_module_uses_the_registry_and_warns_once(
    make_distribution: MakeDistribution,
) -> None:
    make_distribution("selinon-storage-s3", storages={"S3": "acme_s3:S3"}, modules={"acme_s3": adapter_source("S3")})
    registry._warned.discard("selinon.storages.s3")
    with pytest.warns(registry.LegacyImportWarning, match="`import: selinon.storages.s3` is no longer needed"):
        assert registry.resolve("S3", "selinon.storages.s3").__module__ == "acme_s3"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.resolve("S3", "selinon.storages.s3")


@pytest.mark.parametrize(
    ("module", "expected"), [(module, names) for module, names in SELINON_1_MODULES.items() if names[0] != "Result"]
)
def test_legacy_import_line_without_the_adapter(module: str, expected: tuple[str, str]) -> None:
    classname, distribution = expected
    with pytest.raises(PluginError, match=f"pip install {distribution}"):
        registry.resolve(classname, module)


# A project's own storage as written for Selinon 1.x (thoth-station's pattern): a DataStorage subclass that skips
# DataStorage.__init__, formats its options from the environment itself, keeps each result as a document under a
# key of its own in an object store (here a stand-in for that unrelated service), and refuses the plain retrieve.
PROJECT_STORAGE = """
import os

from selinon import DataStorage

OBJECT_STORE = {}  # stands in for the project's object store (Ceph)


class DocumentStore(DataStorage):
    def __init__(self, bucket, prefix):
        self.store_ = None
        self.bucket = bucket
        self.prefix = prefix

    def connect(self):
        self.store_ = OBJECT_STORE.setdefault(self.bucket.format(**os.environ), {})

    def is_connected(self):
        return self.store_ is not None

    def disconnect(self):
        self.store_ = None

    def retrieve(self, flow_name, task_name, task_id):
        raise NotImplementedError

    def retrieve_document(self, name):
        return self.store_[os.path.join(self.prefix, name)]

    def store(self, node_args, flow_name, task_name, task_id, result):
        key = os.path.join(self.prefix, node_args["package_name"])
        self.store_[key] = {"result": result, "@meta": {"task_id": task_id}}
        return key
"""


def test_datastorage_subclass_written_for_selinon_1(
    make_distribution: MakeDistribution, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selinon import StoragePool

    make_distribution("project-worker", modules={"project_storages": PROJECT_STORAGE})
    monkeypatch.setenv("DEPLOYMENT_PREFIX", "stage")
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(
        "storages:\n"
        "  - name: ReadmeStore\n"
        "    classname: DocumentStore\n"
        "    import: project_storages\n"
        "    configuration: {bucket: '{DEPLOYMENT_PREFIX}-thoth', prefix: readme}\n"
        "tasks:\n"
        "  - name: ReadmeTask\n"
        "    import: project_tasks\n"
        "    storage: ReadmeStore\n"
    )
    StoragePool.configure(nodes)
    try:
        key = StoragePool.set({"package_name": "selinon"}, "flow", "ReadmeTask", "t-1", {"readme": "# Selinon"})
        assert key == "readme/selinon"
        storage = StoragePool.get_connected_storage("ReadmeStore")
        assert storage.retrieve_document("selinon") == {"result": {"readme": "# Selinon"}, "@meta": {"task_id": "t-1"}}
        assert storage.bucket == "stage-thoth"
        with pytest.raises(StorageError, match="retrieve failed: NotImplementedError") as caught:
            StoragePool.retrieve("flow", "ReadmeTask", "t-1")
        assert isinstance(caught.value.__cause__, NotImplementedError)
    finally:
        StoragePool.disconnect_all()
