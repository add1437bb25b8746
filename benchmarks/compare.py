"""Side-by-side measurement: two workloads run in alternating rounds, and only their ratio is reported.

On a shared, noisy machine absolute rates drift from one minute to the next; alternating rounds (A, B, A, B...)
expose both workloads to the same drift, and the median of per-round ratios discards the outliers. Within a
round, single-threaded workloads alternate again in slices of 50 ms (A B B A ...): a database whose disk is
busy with other people's work for a second slows both sides, not the one whose turn it was.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Comparison:
    name: str
    ours: float  # median rate (operations per second) or median seconds, per `unit`
    baseline: float
    ratio: float  # ours / baseline, per round, median
    unit: str
    target: str
    met: bool
    note: str = ""
    ratios: tuple[float, ...] = ()  # every round's ratio, in the order measured: their spread shows the noise

    @property
    def spread(self) -> str:
        return f"{min(self.ratios):.2f}-{max(self.ratios):.2f}" if self.ratios else "-"

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "ratios": list(self.ratios)}


class Worker:
    """benchmarks/peer.py in its own process, on the interpreter of some environment, driven over a pipe.

    It takes part in compare_rates() like an in-process workload: each round is one `measure` request.
    """

    def __init__(self, python: str) -> None:
        self.python = python
        self.process = subprocess.Popen(
            [python, str(Path(__file__).with_name("peer.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def request(self, op: str, **arguments: Any) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker on {self.python} exited ({self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def timed(self, seconds: float) -> tuple[int, float]:
        answer = self.request("measure", seconds=seconds)
        return int(answer["operations"]), float(answer["elapsed"])

    def __call__(self, n: int) -> None:
        """compare_rates() warms every workload up with one call: a short measurement does it."""
        self.timed(0.05)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.request("close")
            finally:
                assert self.process.stdin
                self.process.stdin.close()
                self.process.wait(30)


#: Within a round, single-threaded workloads take turns of this many seconds.
SLICE = 0.05


def timed(work: Callable[[int], None], seconds: float) -> tuple[int, float]:
    """Operations done by ``work(n)`` (which performs n operations) run for about ``seconds``, and the time taken."""
    if isinstance(work, Worker):
        return work.timed(seconds)
    n, start = 0, time.perf_counter()
    batch = 1
    while True:
        work(batch)
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n, elapsed
        batch = min(batch * 2, 256)


def rate(work: Callable[[int], None], seconds: float) -> float:
    """Operations per second of ``work(n)`` run for about ``seconds``."""
    n, elapsed = timed(work, seconds)
    return n / elapsed


def sliced_rates(works: tuple[Callable[[int], None], Callable[[int], None]], seconds: float, first: int) -> list[float]:
    """The rates of two workloads that take turns in slices for about ``seconds`` each, ``first`` starting."""
    done = [[0, 0.0], [0, 0.0]]
    slices = max(1, round(seconds / SLICE))
    for turn in range(slices):
        for index in (first, 1 - first) if turn % 2 == 0 else (1 - first, first):
            n, elapsed = timed(works[index], seconds / slices)
            done[index][0] += n
            done[index][1] += elapsed
    return [n / elapsed for n, elapsed in done]


def threaded_rate(works: list[Callable[[int], None]], seconds: float) -> float:
    """Operations per second of several threads, each running its own ``work`` until the time is up."""
    counts = [0] * len(works)
    start = time.perf_counter()
    deadline = start + seconds

    def loop(index: int) -> None:
        while time.perf_counter() < deadline:
            works[index](1)
            counts[index] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(works))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def compare_rates(
    ours: Callable[[int], None] | list[Callable[[int], None]],
    baseline: Callable[[int], None] | list[Callable[[int], None]],
    rounds: int,
    seconds: float,
) -> tuple[float, float, float, tuple[float, ...]]:
    """Median rate of each, the median of per-round ratios (ours / baseline; higher is better) and those ratios.

    A list of workloads runs as that many threads, each with its own workload.
    """

    for work in (ours, baseline):  # warm up connections and caches
        for one in work if isinstance(work, list) else [work]:
            one(1)
    pairs = []
    for round_ in range(rounds):
        first = round_ % 2  # alternate which goes first, so neither always runs on a warmer machine
        if isinstance(ours, list) or isinstance(baseline, list):
            rates = [0.0, 0.0]
            for index in (first, 1 - first):
                work = (ours, baseline)[index]
                rates[index] = threaded_rate(work, seconds) if isinstance(work, list) else rate(work, seconds)
        else:
            rates = sliced_rates((ours, baseline), seconds, first)
        pairs.append((rates[0], rates[1]))
    return _summary(pairs)


def compare_cpu(
    ours: Callable[[int], None], baseline: Callable[[int], None], rounds: int, seconds: float
) -> tuple[float, float, float, tuple[float, ...]]:
    """Median client CPU seconds per operation of each (``time.process_time``: the server's work and other processes
    left out, which a rate on a shared machine mixes in), the median of per-round ratios (ours / baseline; lower is
    better) and those ratios."""
    ours(20), baseline(20)  # warm up: connections, and statements a driver prepares after a few runs
    pairs = []
    for round_ in range(rounds):
        per_operation = [0.0, 0.0]
        for index in (round_ % 2, 1 - round_ % 2):
            cpu = time.process_time()
            n, _ = timed((ours, baseline)[index], seconds)
            per_operation[index] = (time.process_time() - cpu) / n
        pairs.append((per_operation[0], per_operation[1]))
    return _summary(pairs)


def _summary(pairs: list[tuple[float, float]]) -> tuple[float, float, float, tuple[float, ...]]:
    ratios = tuple(a / b for a, b in pairs)
    return (
        statistics.median(a for a, _ in pairs),
        statistics.median(b for _, b in pairs),
        statistics.median(ratios),
        ratios,
    )


def compare_times(
    ours: Callable[[], None], baseline: Callable[[], None], rounds: int
) -> tuple[float, float, float, tuple[float, ...]]:
    """Median wall time of each, the median of per-round ratios (ours / baseline; lower is better) and those."""
    ours(), baseline()
    pairs = []
    for round_ in range(rounds):
        order = [(0, ours), (1, baseline)] if round_ % 2 == 0 else [(1, baseline), (0, ours)]
        times = [0.0, 0.0]
        for index, work in order:
            start = time.perf_counter()
            work()
            times[index] = time.perf_counter() - start
        pairs.append((times[0], times[1]))
    return _summary(pairs)
