"""What `selinon run` shows while a flow runs: the flow's graph redrawn on a terminal (here, frames written to a
buffer), every node waiting, running, retrying, done or failed, sub-flows beneath their node."""

from __future__ import annotations

import io

from flowkit import flow, system, task

from selinon.executor import Executor, FlowRun
from selinon.progress import GraphProgress, graph_lines

BUILT = system(
    [task("Task1", "FailFirst", max_retry=1), task("Task2"), task("Inner"), task("Rescue"), task("Never", "Fail")],
    [
        flow(
            "main",
            {"from": [], "to": "Task1"},
            {"from": "Task1", "to": ["Task2", "sub"]},
            {"from": "Task2", "to": "Never", "condition": {"name": "alwaysFalse"}},
            failures=[{"nodes": "Never", "fallback": "Rescue"}],
        ),
        flow("sub", {"from": [], "to": "Inner"}),
    ],
)


def frames_of_a_run() -> list[list[str]]:
    frames: list[list[str]] = []

    def draw(root: FlowRun) -> None:
        frames.append(list(graph_lines(root)))

    Executor(BUILT, 1, on_change=draw).run("main", {"failures": 1})
    return frames


def test_every_node_of_the_graph_is_shown_with_its_state_as_the_flow_moves() -> None:
    frames = frames_of_a_run()
    first, last = frames[0], frames[-1]
    assert first == [
        "main: running",
        "  > Task1   running",
        "    Task2   waiting",
        "    sub     waiting",
        "    Never   waiting",
        "    Rescue  waiting",
    ]
    assert "  ~ Task1   retrying (try 1 failed)" in {line for frame in frames for line in frame}
    assert last == [
        "main: succeeded",
        "  + Task1   done after 2 tries",
        "  + Task2   done",
        "  + sub     done",
        "    sub: succeeded",
        "      + Inner  done",
        "    Never   waiting",  # its condition never held
        "    Rescue  waiting",
    ]


def test_on_a_terminal_each_frame_replaces_the_one_before() -> None:
    screen = io.StringIO()
    progress = GraphProgress(screen)
    Executor(BUILT, 1, on_change=progress).run("main", {"failures": 0})
    progress.clear()
    written = screen.getvalue()
    frames = written.split("\x1b[J")
    assert len(frames) > 3
    # Each frame ends by going back up over every line it drew; the erase that follows makes room for the next.
    for frame in frames[:-1]:
        assert frame.endswith(f"\x1b[{frame.count(chr(10))}F"), frame
    assert frames[-1] == ""  # cleared at the end: the report is printed in its place
