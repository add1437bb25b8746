"""A storage that keeps each task's record as a JSON file in one directory."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from selinon import jsonpolicy
from selinon.errors import SelinonMissingDataException, StorageError
from selinon.storage import DataStorage, ExcInfo, describe_error

# Longest file name component many file systems accept is 255 bytes; keep room for the suffix.
_MAX_NAME = 180


def file_name(task_id: str) -> str:
    """A file name for a task id that stays inside the directory whatever the id holds.

    Percent-encoding of the UTF-8 bytes, dots included, so no name is ``..`` or holds a separator, and two ids
    never share a file. Long ids keep a readable head and a hash (``~`` never appears otherwise).
    """
    escaped = quote(task_id, safe="", errors="surrogatepass").replace(".", "%2E").replace("~", "%7E")
    if len(escaped) > _MAX_NAME or not escaped:
        escaped = f"{escaped[:64]}~{hashlib.sha256(task_id.encode('utf-8', 'surrogatepass')).hexdigest()}"
    return escaped + ".json"


class Filesystem(DataStorage):
    """One JSON file per task id under ``path``; writes are atomic (a temporary file renamed into place).

    :param path: the directory; created on connect when missing. ``None`` (``path: null``, or no ``path``), as in
        Selinon 1.x: the working directory when the storage is built
    """

    thread_safe = True

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            path = os.getcwd()
        if not isinstance(path, str) or not path:
            raise ValueError("`path` must be a non-empty directory path, or null for the working directory")
        self.path = Path(path)
        self._connected = False

    def connect(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create directory {str(self.path)!r}: {exc.strerror}") from exc
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    def is_connected(self) -> bool:
        return self._connected

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> str:
        jsonpolicy.check(result)
        return self._write(
            task_id, {"flow_name": flow_name, "task_name": task_name, "node_args": node_args, "result": result}
        )

    def store_error(self, node_args: Any, flow_name: str, task_name: str, task_id: str, exc_info: ExcInfo) -> str:
        record = {
            "flow_name": flow_name,
            "task_name": task_name,
            "node_args": node_args,
            "error": describe_error(exc_info),
        }
        return self._write(task_id, record)

    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        record = self._read(task_id)
        if "result" not in record:
            raise SelinonMissingDataException(f"task {task_id!r} failed; it has no result")
        return record["result"]

    def retrieve_error(self, flow_name: str, task_name: str, task_id: str) -> dict[str, str]:
        record = self._read(task_id)
        if "error" not in record:
            raise SelinonMissingDataException(f"task {task_id!r} has no error recorded")
        return dict(record["error"])

    def retrieve_owner(self, flow_name: str, task_name: str, task_id: str) -> tuple[str | None, str | None]:
        record = self._read(task_id)
        return record.get("flow_name"), record.get("task_name")

    def delete(self, flow_name: str, task_name: str, task_id: str) -> None:
        try:
            (self.path / file_name(task_id)).unlink()
        except FileNotFoundError:
            raise SelinonMissingDataException(f"no record for task id {task_id!r}") from None

    def _write(self, task_id: str, record: dict[str, Any]) -> str:
        data = json.dumps(record, ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )  # fails before anything is written
        name = file_name(task_id)
        fd, temporary = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, self.path / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return name

    def _read(self, task_id: str) -> dict[str, Any]:
        try:
            with open(self.path / file_name(task_id), encoding="utf-8") as handle:
                record: dict[str, Any] = json.load(handle)
                return record
        except FileNotFoundError:
            raise SelinonMissingDataException(f"no record for task id {task_id!r}") from None
