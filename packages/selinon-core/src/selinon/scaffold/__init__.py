"""``selinon plugins new``: a ready-to-publish adapter project, generated from the files in ``template/``.

Template files end in ``.tmpl`` and use ``string.Template`` placeholders (``$classname``...); a directory named
``__package__`` becomes the import package.
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from selinon.errors import ConfigurationError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")


def names(backend: str, classname: str | None = None) -> dict[str, str]:
    """Every name a project for ``backend`` (such as ``acme`` or ``acme-db``) needs; the class is named after
    the backend (``AcmeDb``) unless ``classname`` is given (``mysql`` can be ``MySQL``)."""
    backend = backend.lower()
    if backend.startswith("selinon-storage-"):
        backend = backend[len("selinon-storage-") :]
    if not _NAME.match(backend):
        raise ConfigurationError(
            f"{backend!r} is not a usable name; use lowercase letters, digits and dashes, such as 'acme-db'"
        )
    package = f"selinon_storage_{backend.replace('-', '_')}"
    if classname is None:
        classname = "".join(part.capitalize() for part in backend.split("-"))
        if keyword.iskeyword(classname):
            classname += "Storage"
    elif not (classname.isidentifier() and classname.isascii() and not keyword.iskeyword(classname)):
        raise ConfigurationError(f"--classname {classname!r} is not a Python class name; use one such as 'MySQL'")
    from selinon import __version__

    major, minor = __version__.split(".")[:2]
    core_range = f">={major}.{minor},<{int(major) + 1}" if major != "0" else f">={major}.{minor},<1"
    return {
        "backend": backend,
        "distribution": f"selinon-storage-{backend}",
        "package": package,
        "classname": classname,
        "core_range": core_range,
    }


def create(backend: str, directory: Path, classname: str | None = None) -> Path:
    """Write the project into ``directory/<distribution>``; refuses to write into an existing folder."""
    values = names(backend, classname)
    target = directory / values["distribution"]
    if target.exists():
        raise ConfigurationError(f"{target} already exists; choose another --dir or remove it")
    _copy(resources.files(__package__).joinpath("template"), target, values)
    return target


def _copy(source: Traversable, target: Path, values: dict[str, str]) -> None:
    target.mkdir(parents=True)
    for item in source.iterdir():
        name = item.name.replace("__package__", values["package"])
        if item.is_dir():
            if name != "__pycache__":
                _copy(item, target / name, values)
        elif name.endswith(".tmpl"):
            (target / name[: -len(".tmpl")]).write_text(Template(item.read_text("utf-8")).substitute(values), "utf-8")
