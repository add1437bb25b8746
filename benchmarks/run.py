"""Run every benchmark and print one table of side-by-side ratios (``--json`` for machines).

nox -s bench                      # installs everything, starts the test servers, runs this
python benchmarks/run.py --quick  # fewer, shorter rounds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from adapters import BACKENDS, client_cpu, overhead, scaling, versus_selinon1
from compare import Comparison
from flows import celery_scheduling, celery_throughput, local_executor
from mongodb_layout import mongodb_layout_costs
from sql_layout import layout_costs
from startup import discovery_at_scale, startup

ROOT = Path(__file__).parents[1]
PACKAGES = [
    ROOT / "packages" / name
    for name in ("selinon-core", *(f"selinon-storage-{b}" for b in ("postgresql", "redis", "mongodb", "s3")))
]


@contextlib.contextmanager
def servers() -> Iterator[dict[str, str]]:
    """Where each backend's server is: the machine's PostgreSQL and Redis, and MongoDB and S3 servers started here
    unless SELINON_BENCH_MONGODB / SELINON_BENCH_S3 name running ones."""
    from selinon.testing import ServerProcess

    found = {
        "postgresql": os.environ.get("SELINON_BENCH_POSTGRESQL", "postgresql://postgres@127.0.0.1:5432/test"),
        "redis": os.environ.get("SELINON_BENCH_REDIS", "127.0.0.1:6379"),
    }
    started = []
    with tempfile.TemporaryDirectory(prefix="selinon-bench-mongodb-") as mongodb_data:
        try:
            if "SELINON_BENCH_MONGODB" in os.environ:
                found["mongodb"] = os.environ["SELINON_BENCH_MONGODB"]
            else:
                # On a storage directory: SecantusDB's in-memory engine fills up and fails every write after a
                # few hundred 5 MB replacements.
                argv = ["-m", "secantus", "--host", "127.0.0.1", "--port", "{port}", "--storage-path", mongodb_data]
                mongo = ServerProcess([sys.executable, *argv], "SecantusDB").start()
                started.append(mongo)
                found["mongodb"] = f"127.0.0.1:{mongo.port}"
            if "SELINON_BENCH_S3" in os.environ:
                found["s3"] = os.environ["SELINON_BENCH_S3"]
            else:
                moto = ServerProcess(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "{port}"], "moto S3 server"
                ).start()
                started.append(moto)
                found["s3"] = f"http://127.0.0.1:{moto.port}"
            yield found
        finally:
            for process in started:
                process.stop()


def configure_pool(classname: str, configuration: dict[str, object]):  # type: ignore[no-untyped-def]
    from selinon import StoragePool
    from selinon.config import from_documents

    document = {
        "storages": [{"name": "Bench", "classname": classname, "configuration": configuration}],
        "tasks": [{"name": "benchTask", "storage": "Bench"}],
    }
    StoragePool.configure(from_documents([("<benchmark>", document)]))
    return StoragePool


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds (a smoke run)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only these parts: selinon1, overhead, cpu, scaling, payload, layout, flows, celery, scheduling, "
        "startup, discovery",
    )
    parser.add_argument(
        "--selinon1",
        metavar="PYTHON",
        default=os.environ.get("SELINON_BENCH_SELINON1_PYTHON"),
        help="the interpreter of an environment holding selinon==1.4.0 and its drivers (nox -s bench makes one)",
    )
    args = parser.parse_args()
    # Every row gets the same number of rounds: with three, single rows of a noisy server or of many threads
    # landed anywhere between 0.8 and 1.2 from one run to the next.
    rounds, seconds = (3, 0.3) if args.quick else (7, 1.0)
    parts = set(args.only) or {
        "selinon1", "overhead", "cpu", "scaling", "payload", "layout", "flows", "celery", "scheduling", "startup",
        "discovery",
    }  # fmt: skip
    results: list[Comparison] = []

    def measure(name: str, run: Callable[..., Comparison], *args: Any) -> None:
        """One measurement; a failure (a server error, say) is reported in the table, not the end of the run."""
        try:
            report(run(*args))
        except Exception as exc:
            report(
                Comparison(
                    name,
                    math.nan,
                    math.nan,
                    math.nan,
                    "",
                    "-",
                    False,
                    f"failed: {type(exc).__name__}: {str(exc)[:160]}",
                )
            )

    def report(comparison: Comparison) -> None:
        results.append(comparison)
        if not args.json:
            print(
                f"  {comparison.name}: ratio {comparison.ratio:.2f} ({'met' if comparison.met else 'MISSED'}), "
                f"rounds {comparison.spread}",
                file=sys.stderr,
                flush=True,
            )

    with servers() as where:
        for name, make in BACKENDS.items():
            backend = make(where)
            try:
                if "selinon1" in parts:
                    measure(f"{name}: Selinon 1.4.0", versus_selinon1, backend, args.selinon1, rounds, seconds)
                if "overhead" in parts:
                    for baseline in ("simplest", "mirrored"):
                        measure(f"{name}: overhead", overhead, backend, rounds, seconds, 1024, baseline)
                if "cpu" in parts:
                    for size in (1024, 100 * 1024):
                        measure(f"{name}: client CPU", client_cpu, backend, rounds, seconds, size)
                if "scaling" in parts:
                    pool = configure_pool(backend.classname, backend.configuration)
                    for threads in (1, 2, 4, 8):
                        measure(
                            f"{name}: pool, {threads} threads",
                            scaling,
                            backend,
                            pool,
                            threads,
                            rounds,
                            seconds,
                        )
                    pool.disconnect_all()
                # Largest payloads last: a server that fails under them must not spoil the other measurements.
                if "payload" in parts:
                    measure(f"{name}: payload 100 KB", overhead, backend, rounds, seconds, 100 * 1024, "simplest")
                    measure(f"{name}: payload 5 MB", overhead, backend, rounds, seconds * 2, 5 << 20, "mirrored")
            finally:
                backend.cleanup(backend.configuration)
        if "layout" in parts:
            for label, costs in (("PostgreSQL", layout_costs), ("MongoDB", mongodb_layout_costs)):
                try:
                    costs(where[label.lower()], rounds, seconds, report)
                except Exception as exc:
                    report(
                        Comparison(f"{label} layout", math.nan, math.nan, math.nan, "", "-", False, f"failed: {exc!r}")
                    )
        if "celery" in parts:
            try:
                for comparison in celery_throughput(sys.executable, args.selinon1, where["redis"], 5, 5, 2):
                    report(comparison)
            except Exception as exc:
                report(Comparison("Celery", math.nan, math.nan, math.nan, "", "-", False, f"failed: {exc!r}"))
        if "scheduling" in parts:
            try:
                for comparison in celery_scheduling(sys.executable, where["redis"], 5, 5, 2 if args.quick else 3):
                    report(comparison)
            except Exception as exc:
                report(
                    Comparison("Celery scheduling", math.nan, math.nan, math.nan, "", "-", False, f"failed: {exc!r}")
                )
    if "flows" in parts:
        for flow, size in (("chain", 200), ("fanout", 200)):
            measure(f"local executor: {flow}", local_executor, sys.executable, args.selinon1, flow, size, rounds)
    if "startup" in parts:
        report(startup(sys.executable, rounds * 3))
    if "discovery" in parts:
        uv = shutil.which("uv")
        assert uv, "the discovery benchmark needs uv"
        report(discovery_at_scale(sys.executable, uv, [str(p) for p in PACKAGES], rounds * 2))

    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(table(results))
    return 0


def table(results: list[Comparison]) -> str:
    rows = [("measure", "ours", "baseline", "unit", "ratio", "rounds", "target", "met")]
    for r in results:
        rows.append(
            (
                r.name,
                f"{r.ours:,.1f}",
                f"{r.baseline:,.1f}",
                r.unit,
                f"{r.ratio:.2f}",
                r.spread,
                r.target,
                "-" if r.target in ("info", "-") else "yes" if r.met else "NO",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [f"- {r.name}: {r.note}" for r in results if r.note]
    return "\n".join(lines + (["", *notes] if notes else []))


if __name__ == "__main__":
    raise SystemExit(main())
