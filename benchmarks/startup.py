"""Command start-up: `selinon plugins list` against a floor that does only the unavoidable work.

The floor starts the same interpreter, imports the same command-line framework and reads the same entry points:
what remains is the cost of Selinon's own code.
"""

from __future__ import annotations

import subprocess
import tempfile
import zipfile
from pathlib import Path

from compare import Comparison, compare_times

DRIVERS = ("sqlalchemy", "redis", "pymongo", "boto3", "botocore", "psycopg", "yaml")
FLOOR = (
    "import click, sys\n"
    "if sys.version_info >= (3, 12):\n    from importlib.metadata import entry_points\n"  # as selinon.installed
    "else:\n    from importlib_metadata import entry_points\n"
    "[(e.name, e.value, e.dist.name, e.dist.version, e.dist.requires) "
    "for e in entry_points(group='selinon.storages')]"
)
IMPORTED = (
    "import sys\nfrom selinon.cli import main\n"
    "try:\n    main(['plugins', 'list'])\nexcept SystemExit:\n    pass\n"
    f"print(sorted(m for m in sys.modules if m.split('.')[0] in {DRIVERS!r}))\n"
)


def _runner(executable: str, argv: list[str]):  # type: ignore[no-untyped-def]
    def run() -> None:
        subprocess.run([executable, *argv], check=True, stdout=subprocess.DEVNULL)

    return run


def startup(python: str, rounds: int) -> Comparison:
    selinon = [str(Path(python).parent / "selinon"), "plugins", "list"]
    ours, floor, ratio, ratios = compare_times(
        lambda: subprocess.run(selinon, check=True, stdout=subprocess.DEVNULL),
        _runner(python, ["-c", FLOOR]),
        rounds,
    )
    out = subprocess.run([python, "-c", IMPORTED], check=True, capture_output=True, text=True).stdout
    imported = out.strip().splitlines()[-1]
    return Comparison(
        "start-up: selinon plugins list vs floor",
        ours * 1000, floor * 1000, ratio, "ms", "<= 1.3x, no driver imported",
        ratio <= 1.3 and imported == "[]",
        f"driver modules imported: {imported}",
        ratios,
    )  # fmt: skip


def _tiny_wheel(directory: Path, index: int) -> Path:
    """A small adapter distribution: one module and its `selinon.storages` entry point."""
    name = f"bench_adapter_{index:03d}"
    dist_info = f"{name}-1.0.0.dist-info"
    path = directory / f"{name}-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{name}.py", "from selinon.storages.memory import InMemoryStorage as Storage\n")
        wheel.writestr(
            f"{dist_info}/METADATA",
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 1.0.0\n"
            "Requires-Dist: selinon-core>=0.1,<1\n",
        )
        wheel.writestr(
            f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{dist_info}/entry_points.txt", f"[selinon.storages]\nBench{index:03d} = {name}:Storage\n")
        wheel.writestr(f"{dist_info}/RECORD", "")
    return path


def discovery_at_scale(python: str, uv: str, packages: list[str], rounds: int, extra: int = 200) -> Comparison:
    """`selinon plugins list` with `extra` more adapter distributions installed, against the same without."""
    with tempfile.TemporaryDirectory(prefix="selinon-bench-") as tmp:
        root = Path(tmp)
        envs = {}
        for label in ("plain", "crowded"):
            env = root / label
            subprocess.run([uv, "venv", "--quiet", "--python", python, str(env)], check=True)
            subprocess.run([uv, "pip", "install", "--quiet", "--python", str(env), *packages], check=True)
            envs[label] = env
        wheels = [_tiny_wheel(root, i) for i in range(extra)]
        subprocess.run(
            [uv, "pip", "install", "--quiet", "--no-deps", "--python", str(envs["crowded"]), *map(str, wheels)],
            check=True,
        )
        listed = subprocess.run(
            [str(envs["crowded"] / "bin" / "selinon"), "plugins", "list"], check=True, capture_output=True, text=True
        ).stdout
        assert listed.count("Bench") == extra, "the crowded environment does not list every extra adapter"
        crowded, plain, ratio, ratios = compare_times(
            _runner(str(envs["crowded"] / "bin" / "selinon"), ["plugins", "list"]),
            _runner(str(envs["plain"] / "bin" / "selinon"), ["plugins", "list"]),
            rounds,
        )
    return Comparison(
        f"discovery: plugins list, +{extra} adapters vs none",
        crowded * 1000,
        plain * 1000,
        ratio,
        "ms",
        "<= 2x",
        ratio <= 2,
        ratios=ratios,
    )
