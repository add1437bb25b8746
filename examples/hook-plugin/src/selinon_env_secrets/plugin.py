"""The hook implementations; kept free of heavy imports, since every `selinon` command loads hook plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import selinon

PREFIX = "file:"


@selinon.hookimpl
def register_storages(register: Any) -> None:
    register("selinon_env_secrets.storage:SecretsCheckedMemory")


@selinon.hookimpl
def storage_configuration(configuration: dict[str, Any]) -> None:
    for option, value in list(configuration.items()):
        if isinstance(value, str) and value.startswith(PREFIX):
            configuration[option] = Path(value[len(PREFIX) :]).read_text(encoding="utf-8").strip()
