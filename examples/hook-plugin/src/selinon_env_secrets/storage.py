"""A storage registered through the `register_storages` hook rather than an entry point."""

from __future__ import annotations

from selinon import StorageError
from selinon.storages.memory import InMemoryStorage


class SecretsCheckedMemory(InMemoryStorage):
    """In-memory results, behind a password that must have been filled in by the time it connects."""

    def __init__(self, password: str, json: bool = True) -> None:
        super().__init__(json=json)
        self.password = password

    def connect(self) -> None:
        if self.password.startswith("file:"):
            raise StorageError("the password was not read from its file")
        super().connect()
