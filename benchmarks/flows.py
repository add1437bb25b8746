"""Flow throughput: tasks per second of `selinon run` (the local executor) on a long chain and on a wide fan-out.

The same flows, in Selinon 1.x's flow language, also run through Selinon 1.4.0's own local executor
(`selinon-cli execute`) where it runs. Each run is a whole command, start-up included, as a user runs it; the
tasks do nothing and store nothing, so what is measured is the dispatching.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from compare import Comparison, compare_times

#: How long the `nap` flow's first task takes: long enough for a fixed look interval to make passes that see nothing.
NAP = 8

TASKS = f"""import time

from selinon import SelinonTask


class Noop(SelinonTask):
    def run(self, node_args):
        return {{"ok": 1}}


class Nap(SelinonTask):
    def run(self, node_args):
        time.sleep({NAP})
        return {{"ok": 1}}
"""


def write_flows(directory: Path, size: int) -> None:
    """`chain`: T0 -> T1 -> ... -> T(size-1); `fanout`: T0 -> T1 ... T(size-1), all at once; `nap`: Nap, which
    takes NAP seconds, -> T0."""
    (directory / "bench_tasks.py").write_text(TASKS)
    tasks = "".join(f"  - name: T{i}\n    import: bench_tasks\n    classname: Noop\n" for i in range(size))
    tasks += "  - name: Nap\n    import: bench_tasks\n"
    (directory / "nodes.yaml").write_text(f"tasks:\n{tasks}flows:\n  - chain\n  - fanout\n  - nap\n")
    chain = "".join(f"      - from: T{i}\n        to: T{i + 1}\n" for i in range(size - 1))
    fanout = "".join(f"          - T{i}\n" for i in range(1, size))
    (directory / "flows.yaml").write_text(
        "flow-definitions:\n"
        f"  - name: chain\n    edges:\n      - from:\n        to: T0\n{chain}"
        f"  - name: fanout\n    edges:\n      - from:\n        to: T0\n      - from: T0\n        to:\n{fanout}"
        "  - name: nap\n    edges:\n      - from:\n        to: Nap\n      - from: Nap\n        to: T0\n"
    )


def _command(python: str, directory: Path, flow: str, selinon1: bool) -> list[str]:
    bin_dir = Path(python).parent
    if selinon1:
        return [
            str(bin_dir / "selinon-cli"), "execute", "-n", str(directory / "nodes.yaml"),
            "-f", str(directory / "flows.yaml"), "--flow-name", flow, "--hide-progressbar",
        ]  # fmt: skip
    return [str(bin_dir / "selinon"), "run", "-c", str(directory / "nodes.yaml"), "-c", str(directory / "flows.yaml")]


def local_executor(python: str, selinon1: str | None, flow: str, size: int, rounds: int) -> Comparison:
    """``size`` tasks of ``flow`` through `selinon run`, against Selinon 1.4.0's `selinon-cli execute`."""
    name = f"local executor: {flow} of {size} tasks, vs Selinon 1.4.0's"
    with tempfile.TemporaryDirectory(prefix="selinon-bench-flows-") as tmp:
        directory = Path(tmp)
        write_flows(directory, size)
        env = {**os.environ, "PYTHONPATH": str(directory)}
        ours = [*_command(python, directory, flow, False), "--concurrency", "4", flow]

        def run_ours() -> None:
            subprocess.run(ours, check=True, capture_output=True, env=env, cwd=directory)  # no progress lines

        why = "no Selinon 1.4.0 environment (--selinon1)" if selinon1 is None else None
        if selinon1 is not None:
            theirs = _command(selinon1, directory, flow, True)
            probe = subprocess.run(theirs, env=env, cwd=directory, capture_output=True, text=True, timeout=600)
            if probe.returncode != 0:
                last = (probe.stderr.strip().splitlines() or ["(no output)"])[-1]
                why = f"Selinon 1.4.0's `selinon-cli execute` fails here: {last[:200]}"
        if why is not None:
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                run_ours()
                times.append(time.perf_counter() - start)
            ours_rate = size / statistics.median(times)
            return Comparison(name, ours_rate, math.nan, math.nan, "tasks/s", "-", True, f"not compared: {why}")

        def run_theirs() -> None:
            subprocess.run(theirs, check=True, stdout=subprocess.DEVNULL, env=env, cwd=directory)

        ours_time, their_time, ratio, ratios = compare_times(run_ours, run_theirs, rounds)
    # Times (lower is better) turned into rates (higher is better): tasks/s and their ratio.
    return Comparison(
        name, size / ours_time, size / their_time, 1 / ratio, "tasks/s", ">= 1.00", 1 / ratio >= 1.0,
        ratios=tuple(1 / r for r in ratios),
    )  # fmt: skip


# -- on Celery ---------------------------------------------------------------------------------------------------


class _Workers:
    """`celery worker` processes of bench_celery_app, each in its own process group, logging to a file."""

    def __init__(self, python: str, count: int, env: dict[str, str], directory: Path) -> None:
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        for index in range(count):
            log = directory / f"worker-{index}.log"
            argv = [
                python, "-m", "celery", "-A", "bench_celery_app", "worker", "--loglevel=INFO", "--pool=prefork",
                "--concurrency=1", "-Q", env["SELINON_BENCH_QUEUE"], "-n", f"bench{index}-{uuid.uuid4().hex[:6]}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ]  # fmt: skip
            with open(log, "wb") as out:
                process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            self.processes.append((process, log))
        deadline = time.monotonic() + 120
        for process, log in self.processes:
            while " ready." not in log.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"a celery worker did not start: {log.read_text(errors='replace')[-500:]}")
                time.sleep(0.2)

    def stop(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _celery_round(python: str, env: dict[str, str], flow: str, count: int) -> tuple[float, list[int]]:
    """One round: ``count`` flows started at once by a bench_celery_client.py process; its time and passes."""
    done = subprocess.run(
        [python, str(Path(__file__).with_name("bench_celery_client.py")), flow, str(count)],
        env=env, capture_output=True, text=True, check=True, timeout=900,
    )  # fmt: skip
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if answer["failed"]:
        raise RuntimeError(f"flows of {flow} did not succeed: {answer['failed'][:3]}")
    return count / answer["elapsed"], answer["passes"]


def celery_throughput(
    python: str, selinon1: str | None, redis: str, size: int, count: int, rounds: int
) -> list[Comparison]:
    """Flows per second and dispatcher passes per flow on 3 Celery workers (Redis as broker and backend), ``count``
    flows of each shape started at once; against the same flows on 3 workers of Selinon 1.4.0, rounds alternated."""
    host, _, port = redis.partition(":")
    prefix = f"selinon-bench-{uuid.uuid4().hex[:8]}:"
    results: list[Comparison] = []
    with tempfile.TemporaryDirectory(prefix="selinon-bench-celery-") as tmp:
        directory = Path(tmp)
        write_flows(directory, size)
        sides = {"ours": python} | ({"selinon1": selinon1} if selinon1 else {})
        envs, workers = {}, {}
        try:
            for side, interpreter in sides.items():
                (directory / side).mkdir()
                envs[side] = {
                    **os.environ,
                    "SELINON_BENCH_PREFIX": f"{prefix}{side}:",
                    "SELINON_BENCH_BROKER": f"redis://{host}:{port}/0",
                    "SELINON_BENCH_QUEUE": f"{prefix}{side}:queue",
                    "SELINON_CONFIG": os.pathsep.join(str(directory / f) for f in ("nodes.yaml", "flows.yaml")),
                    "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(directory)]),
                }
                workers[side] = _Workers(interpreter, 3, envs[side], directory / side)
            for flow in ("chain", "fanout"):
                for side in sides:  # warm up the workers
                    _celery_round(sides[side], envs[side], flow, 1)
                rates: dict[str, list[float]] = {side: [] for side in sides}
                passes: dict[str, list[int]] = {side: [] for side in sides}
                for round_ in range(rounds):
                    for side in list(sides)[:: -1 if round_ % 2 else 1]:
                        rate, counted = _celery_round(sides[side], envs[side], flow, count)
                        rates[side].append(rate)
                        passes[side].extend(counted)
                shape = f"{flow} of {size} tasks, {count} flows at once, 3 workers"
                ours = statistics.median(rates["ours"])
                if "selinon1" in sides:
                    ratios = tuple(a / b for a, b in zip(rates["ours"], rates["selinon1"], strict=True))
                    ratio = statistics.median(ratios)
                    results.append(
                        Comparison(f"Celery: {shape}, vs Selinon 1.4.0", ours, statistics.median(rates["selinon1"]),
                                   ratio, "flows/s", ">= 1.00", ratio >= 1.0, ratios=ratios)
                    )  # fmt: skip
                else:
                    results.append(
                        Comparison(f"Celery: {shape}", ours, math.nan, math.nan, "flows/s", "-", True,
                                   "not compared: no Selinon 1.4.0 environment (--selinon1)")
                    )  # fmt: skip
                theirs = statistics.mean(passes["selinon1"]) if "selinon1" in sides else math.nan
                mine = statistics.mean(passes["ours"])
                results.append(
                    Comparison(f"Celery: dispatcher passes per flow, {flow}, vs Selinon 1.4.0", mine, theirs,
                               mine / theirs, "passes", "info", True,
                               f"ours {min(passes['ours'])}-{max(passes['ours'])} per flow")
                )  # fmt: skip
        finally:
            _clean_up(workers.values(), host, port, prefix)
    return results


def celery_scheduling(python: str, redis: str, size: int, count: int, rounds: int) -> list[Comparison]:
    """Dispatcher passes per flow and flows per second on 3 Celery workers (Redis as broker and backend): the
    default scheduling (backoff while nothing changes, a nudge when a task ends) against the one before it (a look
    every second), side by side in alternating rounds, ``count`` flows of each shape started at once."""
    host, _, port = redis.partition(":")
    prefix = f"selinon-bench-{uuid.uuid4().hex[:8]}:"
    results: list[Comparison] = []
    sides = {"after": "adaptive", "before": "fixed"}
    with tempfile.TemporaryDirectory(prefix="selinon-bench-scheduling-") as tmp:
        directory = Path(tmp)
        write_flows(directory, size)
        envs, workers = {}, {}
        try:
            for side, scheduling in sides.items():
                (directory / side).mkdir()
                envs[side] = {
                    **os.environ,
                    "SELINON_BENCH_PREFIX": f"{prefix}{side}:",
                    "SELINON_BENCH_BROKER": f"redis://{host}:{port}/0",
                    "SELINON_BENCH_QUEUE": f"{prefix}{side}:queue",
                    "SELINON_BENCH_SCHEDULING": scheduling,
                    "SELINON_CONFIG": os.pathsep.join(str(directory / f) for f in ("nodes.yaml", "flows.yaml")),
                    # Both sides are this checkout (a PYTHONPATH that points at another one is kept for both).
                    "PYTHONPATH": os.pathsep.join(
                        [str(Path(__file__).parent), str(directory), *filter(None, [os.environ.get("PYTHONPATH")])]
                    ),
                }
                workers[side] = _Workers(python, 3, envs[side], directory / side)
            for flow in ("chain", "fanout", "nap"):
                # Naps hold their workers: fewer of them leave one worker free for the passes looking at them.
                at_once = count if flow != "nap" else 2
                for side in sides:  # warm up the workers
                    _celery_round(python, envs[side], flow, 1)
                rates: dict[str, list[float]] = {side: [] for side in sides}
                passes: dict[str, list[int]] = {side: [] for side in sides}
                for round_ in range(rounds):
                    for side in list(sides)[:: -1 if round_ % 2 else 1]:
                        rate, counted = _celery_round(python, envs[side], flow, at_once)
                        rates[side].append(rate)
                        passes[side].extend(counted)
                ratios = tuple(a / b for a, b in zip(rates["after"], rates["before"], strict=True))
                shape = f"{flow} of {size} tasks" if flow != "nap" else f"a {NAP} s task, then one"
                shape += f", {at_once} flows at once, 3 workers"
                results.append(
                    Comparison(f"Celery scheduling: {shape}, backoff and nudges vs a look every 1 s",
                               statistics.median(rates["after"]), statistics.median(rates["before"]),
                               statistics.median(ratios), "flows/s", ">= 1.00", statistics.median(ratios) >= 1.0,
                               ratios=ratios)
                )  # fmt: skip
                mine, theirs = statistics.mean(passes["after"]), statistics.mean(passes["before"])
                results.append(
                    Comparison(f"Celery scheduling: dispatcher passes per flow, {flow}, backoff and nudges vs a look "
                               "every 1 s", mine, theirs, mine / theirs, "passes", "info", True,
                               f"after {min(passes['after'])}-{max(passes['after'])}, before "
                               f"{min(passes['before'])}-{max(passes['before'])} per flow")
                )  # fmt: skip
        finally:
            _clean_up(workers.values(), host, port, prefix)
    return results


def _clean_up(workers: Iterable[_Workers], host: str, port: str | int, prefix: str) -> None:
    """Stop the benchmark's workers and remove what its runs left on the Redis server."""
    for started in workers:
        started.stop()
    import redis as redis_client

    connection = redis_client.Redis(host=host, port=int(port))
    for key in connection.scan_iter(match=f"{prefix}*", count=1000):
        connection.delete(key)
    connection.close()
