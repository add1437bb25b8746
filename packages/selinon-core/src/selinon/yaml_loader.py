"""Reading a YAML configuration file without trusting it: bounded in size, in what its aliases expand to and in
depth, with duplicate keys refused.

PyYAML builds an aliased node once and shares it, so a "billion laughs" document loads small; what blows up is
every later walk over it as a tree (environment expansion, copies, validation). So the loaded document is
measured as the tree the rest of Selinon will see, and refused past a budget no real configuration comes near.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from selinon.errors import ConfigurationError

#: Largest configuration file read: Selinon's own largest real configurations are a few hundred kilobytes.
MAX_BYTES = 8 * 1024 * 1024
#: Most values (mappings, lists and scalars) a file may hold once its aliases are expanded.
MAX_VALUES = 1_000_000

_MERGE = "tag:yaml.org,2002:merge"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader (libyaml's when installed), refusing duplicate keys and over-long integers."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE:
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key_node.value!r} appears twice in one mapping (first on line "
                        f"{seen[key].start_mark.line + 1}); keep one",
                        key_node.start_mark,
                    )
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)  # type: ignore[no-any-return]
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"the integer {node.value[:20]}... is too long; quote it if it is text", node.start_mark
            ) from None


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def read(path: str | os.PathLike[str]) -> Any:
    """The parsed file; every problem (unreadable, not UTF-8, too large, bad YAML) is one ConfigurationError."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"{source}: cannot read the file: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise ConfigurationError(
            f"{source}: larger than {MAX_BYTES // 2**20} MB; a configuration is far smaller: check the file name"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{source}: not UTF-8 text; save the file as UTF-8") from None
    return parse(text, source)


def parse(text: str, source: str) -> Any:
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        if isinstance(exc, yaml.constructor.ConstructorError):
            raise ConfigurationError(f"{source}{position}: {exc.problem}") from None
        raise ConfigurationError(
            f"{source}{position}: YAML syntax error: {exc.problem or exc.context}; fix the syntax there"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: YAML error: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigurationError(f"{source}: nested too deeply to read; a configuration needs a few levels") from None
    try:
        _measure(document, {}, set())
    except _TooLarge as exc:
        raise ConfigurationError(f"{source}: {exc}") from None
    return document


class _TooLarge(Exception):
    pass


def _measure(value: Any, sizes: dict[int, int], inside: set[int]) -> int:
    """How many values ``value`` holds as a tree (each shared node counted as often as it is reached), computed
    once per shared node so that measuring a bomb costs no more than loading it."""
    if not isinstance(value, dict | list):
        return 1
    ident = id(value)
    if ident in sizes:
        return sizes[ident]
    if ident in inside:
        raise _TooLarge("an alias refers to a node that contains it (a cycle); write the value out instead")
    inside.add(ident)
    total = 1
    for item in value.values() if isinstance(value, dict) else value:
        total += _measure(item, sizes, inside)
        if total > MAX_VALUES:
            raise _TooLarge(
                f"its aliases expand to more than {MAX_VALUES:,} values (an alias bomb?); write out what you need"
            )
    inside.discard(ident)
    sizes[ident] = total
    return total
