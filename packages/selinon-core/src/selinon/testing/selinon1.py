"""Running Selinon 1.4 itself, in a virtual environment of its own, to write and read records beside an adapter.

``SELINON1_PYTHON`` names that environment's interpreter (``nox -s compat`` makes one with ``selinon==1.4.0`` and
the drivers 1.4 ran on). Without it a developer's run skips the test; with ``CI=true`` it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from typing import Any

import pytest

from selinon.testing.services import in_ci

PYTHON_VARIABLE = "SELINON1_PYTHON"


def run_selinon1(script: str, **arguments: Any) -> Any:
    """Run ``script`` under Selinon 1.4 with ``arguments`` bound as ``ARGS`` (a dict); it assigns ``OUT``, which is
    returned. Both cross as JSON; ``bytes`` in ``OUT`` come back as text (Latin-1), marked ``{"__bytes__": ...}``."""
    python = os.environ.get(PYTHON_VARIABLE)
    if not python:
        message = f"{PYTHON_VARIABLE} is not set: `nox -s compat` runs these tests with Selinon 1.4"
        if in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    program = (
        "import json, sys\n"
        "ARGS = json.loads(sys.stdin.read())\n"
        "OUT = None\n"
        f"{textwrap.dedent(script)}\n"
        "def _plain(value):\n"
        "    if isinstance(value, bytes):\n"
        "        return {'__bytes__': value.decode('latin-1')}\n"
        "    if isinstance(value, dict):\n"
        "        return {key: _plain(item) for key, item in value.items()}\n"
        "    if isinstance(value, list):\n"
        "        return [_plain(item) for item in value]\n"
        "    return value\n"
        "print(json.dumps(_plain(OUT)))\n"
    )
    # Without PYTHONPATH: a path that leads to this core (a checkout's src) would shadow 1.4's own `selinon`.
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [python, "-c", program], input=json.dumps(arguments), capture_output=True, text=True, timeout=120,
        env=environment,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"Selinon 1.4's script failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
