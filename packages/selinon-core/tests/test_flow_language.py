"""Selinon 1.x's flow language on the local executor: foreach, nowait, parallel runs, fallbacks, eager failures,
the propagate_* options, recursive sub-flows, throttling, sampling, the flow cache and selective runs."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import flow_tasks
import pytest
from flow_tasks import RUNS, runs_per_task
from flowkit import MEMORY, by_name, flow, run, system, task

from selinon import StoragePool
from selinon.errors import ConfigurationError
from selinon.executor import Executor

START = {"from": [], "to": "Task1"}
W = "flows.yaml: flow 'main'"


def stored(node: Any) -> Any:
    return StoragePool.retrieve(node.flow_run.name, node.name, node.id)


def foreach(function: str, **options: Any) -> dict[str, Any]:
    return {"import": "flow_tasks", "function": function, **options}


def test_foreach_starts_the_destinations_once_per_item_with_the_flows_node_arguments() -> None:
    built = system(
        [task("Task1"), task("Task2")],
        [flow("main", START, {"from": "Task1", "to": "Task2", "foreach": foreach("items_of_args")})],
    )
    result = run(built, "main", {"items": ["a", "b", "c"]})
    assert result.state == "succeeded"
    seconds = [node for node in result.tasks() if node.name == "Task2"]
    assert len(seconds) == 3 and len({node.id for node in seconds}) == 3
    first = by_name(result) if False else next(node for node in result.tasks() if node.name == "Task1")
    for node in seconds:
        assert stored(node)["args"] == {"items": ["a", "b", "c"]} and node.parent == {"Task1": first.id}


def test_foreach_with_propagate_result_gives_each_item_to_a_sub_flow() -> None:
    built = system(
        [task("Task1"), task("Inner")],
        [
            flow(
                "main",
                START,
                {"from": "Task1", "to": "sub", "foreach": foreach("items_of_parent", propagate_result=True)},
            ),
            flow("sub", {"from": [], "to": "Inner"}),
        ],
    )
    result = run(built, "main", {"items": [1, 2]})
    assert result.state == "succeeded"
    inner = sorted(stored(node)["args"]["item"] for node in result.tasks() if node.name == "Inner")
    assert inner == [1, 2]


def test_a_foreach_edge_may_start_from_a_task_without_storage() -> None:
    built = system(
        [task("Task1", storage=None), task("Task2", "Parents")],
        [flow("main", START, {"from": "Task1", "to": "Task2", "foreach": foreach("items_of_args")})],
    )
    assert run(built, "main", {"items": [1, 2]}).state == "succeeded" and runs_per_task() == {"Task1": 1, "Task2": 2}


def test_an_empty_foreach_starts_nothing() -> None:
    built = system(
        [task("Task1"), task("Task2")],
        [flow("main", START, {"from": "Task1", "to": "Task2", "foreach": foreach("items_of_args")})],
    )
    result = run(built, "main", {"items": []})
    assert result.state == "succeeded" and runs_per_task() == {"Task1": 1}


def test_a_node_listed_several_times_runs_in_parallel() -> None:
    flow_tasks.barrier = __import__("threading").Barrier(3, timeout=10)
    built = system([task("Together", "Together")], [flow("main", {"from": [], "to": ["Together"] * 3})])
    result = run(built, "main")
    assert result.state == "succeeded" and runs_per_task() == {"Together": 3}
    assert len({node.id for node in result.tasks()}) == 3


def test_nowait_nodes_are_started_but_not_waited_for() -> None:
    built = system(
        [task("Task1"), task("Later", "Fail"), task("Task2")],
        [flow("main", START, {"from": "Task1", "to": ["Later", "Task2"]}, nowait=["Later"])],
    )
    result = run(built, "main")
    assert result.state == "succeeded", result.error  # Later failed, but the flow does not wait for it
    assert runs_per_task() == {"Task1": 1, "Later": 1, "Task2": 1}


def test_a_fallback_handles_a_failure_and_gets_the_failed_node_as_parent() -> None:
    built = system(
        [task("Task1", "Fail"), task("Rescue", "Parents")],
        [flow("main", START, failures=[{"nodes": "Task1", "fallback": "Rescue"}])],
    )
    result = run(built, "main", {"x": 1})
    assert result.state == "succeeded", result.error
    nodes = by_name(result)
    assert stored(nodes["Rescue"]) == {"parent": {"Task1": nodes["Task1"].id}, "args": {"x": 1}}


def test_fallback_true_marks_the_failure_handled_and_a_false_condition_does_not() -> None:
    handled = system([task("Task1", "Fail")], [flow("main", START, failures=[{"nodes": "Task1", "fallback": True}])])
    assert run(handled, "main").state == "succeeded"
    conditional = [
        {"nodes": "Task1", "fallback": True, "condition": {"name": "argsFieldEqual", "args": {"key": "ok", "value": 1}}}
    ]
    guarded = system([task("Task1", "Fail")], [flow("main", START, failures=conditional)])
    assert run(guarded, "main", {"ok": 1}).state == "succeeded"
    failed = run(guarded, "main", {"ok": 2})
    assert failed.state == "failed" and failed.error == "task 'Task1' failed: ValueError: boom in Task1"


def test_the_fallback_for_the_largest_set_of_failed_nodes_wins() -> None:
    built = system(
        [task("A", "Fail"), task("B", "Fail"), task("Both", "Parents"), task("OnlyA", "Parents")],
        [
            flow(
                "main",
                {"from": [], "to": ["A", "B"]},
                failures=[{"nodes": "A", "fallback": "OnlyA"}, {"nodes": ["A", "B"], "fallback": "Both"}],
            )
        ],
    )
    result = run(built, "main")
    assert result.state == "succeeded" and runs_per_task() == {"A": 1, "B": 1, "Both": 1}


def test_a_failure_lets_other_branches_finish_before_the_flow_fails() -> None:
    built = system(
        [task("Task1", "Fail"), task("Task2"), task("Task3")],
        [flow("main", {"from": [], "to": ["Task1", "Task2"]}, {"from": "Task2", "to": "Task3"})],
    )
    result = run(built, "main")
    assert result.state == "failed" and runs_per_task() == {"Task1": 1, "Task2": 1, "Task3": 1}


def test_eager_failures_fail_the_flow_at_once_without_fallbacks() -> None:
    definitions = {
        "edges": [{"from": [], "to": ["Task1", "Task2"]}, {"from": "Task2", "to": "Task3"}],
        "failures": [{"nodes": "Task1", "fallback": "Rescue"}],
    }
    tasks = [task("Task1", "Fail"), task("Task2", "Sleep"), task("Task3"), task("Rescue", "Parents")]
    calm = run(system(tasks, [{"name": "main", **definitions}]), "main")
    assert calm.state == "succeeded" and set(runs_per_task()) == {"Task1", "Task2", "Task3", "Rescue"}
    eager = run(system(tasks, [{"name": "main", **definitions, "eager_failures": ["Task1"]}]), "main")
    assert eager.state == "failed" and eager.error == "task 'Task1' failed: ValueError: boom in Task1"
    assert "Rescue" not in runs_per_task() and "Task3" not in runs_per_task()


def test_propagate_parent_gives_a_sub_flow_the_parents_of_the_edge_that_starts_it() -> None:
    built = system(
        [task("Task1"), task("Inner", "Parents")],
        [
            flow("main", START, {"from": "Task1", "to": "sub"}, propagate_parent=["sub"]),
            flow("sub", {"from": [], "to": "Inner"}),
        ],
    )
    result = run(built, "main")
    nodes = by_name(result)
    assert stored(nodes["Inner"])["parent"] == {"Task1": nodes["Task1"].id}


@pytest.mark.parametrize("compound", [False, True])
def test_propagate_finished_passes_the_tasks_of_a_finished_sub_flow(compound: bool) -> None:
    option = "propagate_compound_finished" if compound else "propagate_finished"
    built = system(
        [task("Inner"), task("Deep"), task("After", "Parents")],
        [
            flow("main", {"from": [], "to": "sub"}, {"from": "sub", "to": "After"}, **{option: True}),
            flow("sub", {"from": [], "to": "Inner"}, {"from": "Inner", "to": "deep"}),
            flow("deep", {"from": [], "to": "Deep"}),
        ],
    )
    result = run(built, "main")
    nodes = by_name(result)
    inner, deep = [nodes["Inner"].id], [nodes["Deep"].id]
    expected = {"Inner": inner, "Deep": deep} if compound else {"Inner": inner, "deep": {"Deep": deep}}
    assert stored(nodes["After"])["parent"] == {"sub": expected}


def test_parent_flow_result_reads_a_task_of_a_finished_sub_flow() -> None:
    class_name = "Parents"
    built = system(
        [task("Inner"), task("After", class_name)],
        [
            flow("main", {"from": [], "to": "sub"}, {"from": "sub", "to": "After"}, propagate_finished=["sub"]),
            flow("sub", {"from": [], "to": "Inner"}),
        ],
    )
    result = run(built, "main", {"n": 1})
    nodes = by_name(result)
    task_object = flow_tasks.Parents("main", "After", stored(nodes["After"])["parent"], "x", result.id)
    assert task_object.parent_flow_result("sub", "Inner") == stored(nodes["Inner"])


def test_propagate_failures_gives_a_fallback_the_failed_tasks_of_a_sub_flow() -> None:
    built = system(
        [task("Inner", "Fail"), task("Rescue", "Parents")],
        [
            flow(
                "main",
                {"from": [], "to": "sub"},
                failures=[{"nodes": "sub", "fallback": "Rescue"}],
                propagate_failures=True,
            ),
            flow("sub", {"from": [], "to": "Inner"}),
        ],
    )
    result = run(built, "main")
    nodes = by_name(result)
    assert result.state == "succeeded"
    assert stored(nodes["Rescue"])["parent"] == {"sub": {"Inner": [nodes["Inner"].id]}}


def test_a_flow_that_starts_itself_ends_by_its_foreach() -> None:
    built = system(
        [task("Step", "Countdown")],
        [
            flow(
                "countdown",
                {"from": [], "to": "Step"},
                {"from": "Step", "to": "countdown", "foreach": foreach("count_down", propagate_result=True)},
            )
        ],
    )
    result = run(built, "countdown", {"n": 3})
    assert result.state == "succeeded"
    assert sorted(stored(node)["n"] for node in result.tasks()) == [0, 1, 2, 3]


def test_two_flows_that_start_each_other_end_by_a_condition() -> None:
    more = {"name": "argsFieldGreater", "args": {"key": "n", "value": 0}}
    built = system(
        [task("Ping"), task("Pong")],
        [
            flow(
                "ping",
                {"from": [], "to": "Ping"},
                {"from": "Ping", "to": "pong", "condition": more},
                propagate_node_args=True,
            ),
            flow(
                "pong", {"from": [], "to": "Pong"}, {"from": "Pong", "to": "ping", "condition": {"name": "alwaysFalse"}}
            ),
        ],
    )
    result = run(built, "ping", {"n": 1})
    assert result.state == "succeeded" and runs_per_task() == {"Ping": 1, "Pong": 1}


def test_throttled_task_instances_start_at_least_that_far_apart() -> None:
    built = system(
        [task("Tick", "Clock", throttling={"milliseconds": 300})], [flow("main", {"from": [], "to": ["Tick"] * 3})]
    )
    result = run(built, "main")
    starts = sorted(stored(node)["at"] for node in result.tasks())
    assert result.state == "succeeded" and len(starts) == 3
    assert all(later - earlier >= 0.29 for earlier, later in itertools.pairwise(starts))


def test_throttled_flows_start_at_least_that_far_apart() -> None:
    built = system(
        [task("Tick", "Clock")],
        [
            flow("main", {"from": [], "to": ["sub", "sub"]}),
            flow("sub", {"from": [], "to": "Tick"}, throttling={"seconds": 0.3}),
        ],
    )
    starts = sorted(stored(node)["at"] for node in run(built, "main").tasks())
    assert len(starts) == 2 and starts[1] - starts[0] >= 0.25


def test_sampling_is_validated_and_a_flow_with_it_runs() -> None:
    sampling = {"name": "biexponential_increase", "args": {"start_retry": 2, "max_retry": 120}}
    built = system([task("Task1")], [flow("main", START, sampling=sampling)])
    assert run(built, "main").state == "succeeded"
    assert built.flows["main"].sampling is not None
    status = {"previous_retry": 8, "active_nodes": [1], "failed_nodes": {}, "new_started_nodes": [1]}
    assert built.flows["main"].sampling.next_retry({**status, "new_fallback_nodes": [], "finished_nodes": {}}) == 16


def test_the_default_strategy_backs_off_while_nothing_changes() -> None:
    """strategies.backoff, what Celery dispatchers use without `sampling:`: the start after a change (a node ended
    or started), doubling while nothing changes, up to the ceiling; None when nothing is active."""
    from selinon.strategies import backoff

    quiet = {"active_nodes": [1], "new_started_nodes": [], "new_fallback_nodes": [], "new_finished_nodes": []}
    waits, previous = [], None
    for _ in range(6):
        previous = backoff({**quiet, "previous_retry": previous}, 0.5, 5)
        waits.append(previous)
    assert waits == [0.5, 1.0, 2.0, 4.0, 5, 5]
    assert backoff({**quiet, "previous_retry": 4.0, "new_finished_nodes": ["x"]}, 0.5, 5) == 0.5
    assert backoff({**quiet, "previous_retry": 4.0, "new_started_nodes": ["x"]}, 0.5, 5) == 0.5
    assert backoff({**quiet, "active_nodes": [], "previous_retry": 4.0}, 0.5, 5) is None
    sampling = {"name": "backoff", "args": {"start_retry": 1, "max_retry": 60}}
    assert system([task("Task1")], [flow("main", START, sampling=sampling)]).flows["main"].sampling is not None


def test_a_dispatcher_looks_less_often_while_its_task_runs_and_soon_after_it_ends() -> None:
    """FlowState.next_look without `sampling:`: the start after the pass that started Task1, doubling while it
    runs (the wait travels in the dumped state), the start again once its end is taken in."""
    from selinon.flows.dispatcher import FlowState, LocalThrottle

    built = system([task("Task1"), task("Task2")], [flow("main", START, {"from": "Task1", "to": "Task2"})])
    state = FlowState(built, built.flows["main"], "flow-id", None)
    starts, _ = state.advance(LocalThrottle())
    waits = [state.next_look(0.2, 2.0)]
    for _ in range(5):
        state = FlowState(built, built.flows["main"], "flow-id", None, data=state.dump())
        state.advance(LocalThrottle())
        waits.append(state.next_look(0.2, 2.0))
    assert waits == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    state.ended(starts[0].id, True)
    state.advance(LocalThrottle())
    assert state.changed and state.next_look(0.2, 2.0) == 0.2  # Task1 ended, Task2 started


def test_the_flow_cache_serves_the_dispatchers_repeated_reads() -> None:
    watched = {"name": "Watched", "import": "probe_adapters", "classname": "Watched"}
    exists = {"name": "fieldExist", "args": {"key": "task"}}
    edges = [START, *({"from": "Task1", "to": name, "condition": exists} for name in ("Task2", "Task3", "Task4"))]
    tasks = [
        task("Task1", storage="Watched"),
        *(task(n, "Parents", storage="Watched") for n in ("Task2", "Task3", "Task4")),
    ]
    for cache, reads in ((None, 3), ({"name": "LRU", "configuration": {"max_cache_size": 4}}, 1)):
        options = {} if cache is None else {"cache": cache}
        built = system(tasks, [flow("main", *edges, **options)], storages=[watched])
        result = run(built, "main", concurrency=1)
        calls = StoragePool.get_connected_storage("Watched").calls
        assert result.state == "succeeded"
        assert Counter(calls)[("retrieve", "Task1")] == reads


CHAIN = [
    flow(
        "main",
        START,
        {"from": "Task1", "to": "Task2"},
        {"from": "Task2", "to": "Task3"},
        {"from": "Task1", "to": "Task4"},
    )
]


@pytest.mark.parametrize(
    ("options", "ran"),
    [
        ({}, {"Task1", "Task2"}),
        ({"run_subsequent": True}, {"Task1", "Task2", "Task3"}),
    ],
)
def test_a_selective_run_runs_the_named_tasks_and_what_they_need(options: dict[str, Any], ran: set[str]) -> None:
    built = system([task(f"Task{i}") for i in range(1, 5)], CHAIN)
    flow_tasks.RUNS.clear()
    result = Executor(built).run_flow_selective("main", ["Task2"], {"x": 1}, **options)
    assert result.state == "succeeded" and set(runs_per_task()) == ran


def test_a_selective_run_follows_sub_flows_when_asked() -> None:
    built = system(
        [task("Task1"), task("X"), task("Y")],
        [
            flow("main", START, {"from": "Task1", "to": "sub"}),
            flow("sub", {"from": [], "to": "X"}, {"from": "X", "to": "Y"}),
        ],
    )
    flow_tasks.RUNS.clear()
    with pytest.raises(ConfigurationError, match="task 'X' is not run by flow 'main'"):
        Executor(built).run_flow_selective("main", ["X"])
    result = Executor(built).run_flow_selective("main", ["X"], follow_subflows=True)
    assert result.state == "succeeded" and set(runs_per_task()) == {"Task1", "X"}


def test_a_selective_run_reuses_results_its_selective_run_function_names() -> None:
    built = system(
        [task("Task1", selective_run_function={"name": "reuse_known", "import": "flow_tasks"}), task("Task2")],
        [flow("main", START, {"from": "Task1", "to": "Task2"})],
    )
    executor = Executor(built)
    earlier = executor.run("main", {"x": 1})
    flow_tasks.REUSE["Task1"] = by_name(earlier)["Task1"].id
    flow_tasks.RUNS.clear()
    try:
        result = executor.run_flow_selective("main", ["Task2"], {"x": 2})
    finally:
        flow_tasks.REUSE.clear()
    assert result.state == "succeeded" and runs_per_task() == {"Task2": 1}
    nodes = {node.name: node for node in result.tasks()}
    assert nodes["Task1"].state == "reused" and nodes["Task1"].id == by_name(earlier)["Task1"].id
    assert stored(nodes["Task2"])["parents"] == {"Task1": stored(by_name(earlier)["Task1"])}


def test_default_queues_come_from_global_and_are_expanded_when_used() -> None:
    nodes = {
        "global": {"default_task_queue": "{PREFIX}_tasks", "default_dispatcher_queue": "dispatch"},
        "storages": [MEMORY],
        "tasks": [task("Task1"), task("Task2", queue="own")],
    }
    from selinon import flows

    built = flows.from_documents(
        [
            ("nodes.yaml", nodes),
            ("flows.yaml", {"flow-definitions": [flow("main", START, {"from": "Task1", "to": "Task2"})]}),
        ],
        environ={},
    )
    assert built.task_queue("Task2") == "own" and built.flow_queue("main") == "dispatch"
    with pytest.raises(ConfigurationError, match="nodes.yaml: global: default_task_queue: environment variable PREFIX"):
        built.task_queue("Task1")


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (
            flow("main", START, {"from": "Task1", "to": "Task2"}, nowait=["Task1"]),
            f"{W}: `nowait:` names 'Task1', but an edge starts from it",
        ),
        (flow("main", START, nowait="Task2"), f"{W}: `nowait:` names 'Task2', which no edge or fallback of it starts"),
        (
            flow("main", START, failures=[{"nodes": "Task1", "fallback": False}]),
            f"{W}: failures[0]: `fallback: false` would handle nothing",
        ),
        (
            flow("main", START, failures=[{"nodes": "Task2", "fallback": True}]),
            f"{W}: failures[0]: `nodes:` names 'Task2', which no edge of this flow runs",
        ),
        (
            flow("main", START, failures=[{"nodes": "Task1", "fallback": True, "condition": {"name": "isDict"}}]),
            f"{W}: failures[0]: condition: isDict reads a parent result; a failure's condition tests the node "
            "arguments only; use argsIsDict",
        ),
        (flow("main", START, eager_failures=["Task9"]), f"{W}: `eager_failures:` names 'Task9', which is not among"),
        (
            flow("main", START, throttling={"second": 1}),
            f"{W}: throttling: unknown key 'second'; did you mean 'seconds'?",
        ),
        (
            flow("main", START, sampling={"name": "constant", "args": {}}),
            f"{W}: sampling: constant takes retry under `args:` (missing retry)",
        ),
        (flow("main", START, sampling={"name": "fast"}), f"{W}: sampling: unknown strategy 'fast'"),
        (flow("main", START, strategy={}), f"{W}: `strategy:` is not a Selinon flow option; did you mean `sampling:`?"),
        (
            flow("main", {"from": [], "to": "Task1", "foreach": foreach("items_of_args", propagate_result=True)}),
            f"{W}: edges[0]: foreach: `propagate_result: true` makes each item the node arguments of a sub-flow, "
            "but 'Task1' is a task",
        ),
        (
            flow("main", {"from": [], "to": "Task1", "foreach": foreach("no_such_function")}),
            f"{W}: edges[0]: foreach: module 'flow_tasks' has no function 'no_such_function'",
        ),
        (
            flow("main", START, cache={"name": "LRU", "configuration": {"size": 2, "max_cache_size": 2}}),
            f"{W}: cache: both `size:` and `max_cache_size:` (its Selinon 1.x name) are set; keep one",
        ),
    ],
)
def test_flow_language_errors(definition: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        system([task("Task1"), task("Task2")], [definition])
    assert str(error.value).startswith(message), str(error.value)


def test_a_sub_flow_gets_one_form_of_propagate_finished() -> None:
    definitions = [
        flow("main", {"from": [], "to": "sub"}, {"from": "sub", "to": "Task1"}, propagate_finished=True,
             propagate_compound_finished=["sub"]),
        flow("sub", START),
    ]  # fmt: skip
    with pytest.raises(ConfigurationError) as error:
        system([task("Task1")], definitions)
    assert str(error.value).startswith(
        f"{W}: `propagate_finished:` and `propagate_compound_finished:` both apply to sub"
    )


def test_a_flow_that_starts_itself_unconditionally_is_not_started() -> None:
    built = system([task("Task1")], [flow("main", START, {"from": "Task1", "to": "main"})])
    with pytest.raises(ConfigurationError, match="cannot be started: .*flows start each other in a loop with no way"):
        run(built, "main")


def test_task_options_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="task 'Task1': throttling: `seconds:` must be a number"):
        system([task("Task1", throttling={"seconds": "1"})], [flow("main", START)])
    with pytest.raises(ConfigurationError, match="selective_run_function: module 'flow_tasks' has no function 'nope'"):
        system([task("Task1", selective_run_function={"name": "nope", "import": "flow_tasks"})], [flow("main", START)])
    assert RUNS is flow_tasks.RUNS


def test_a_selective_edge_runs_its_sub_flow_selectively() -> None:
    built = system(
        [task("Task1"), task("X"), task("Y"), task("Z")],
        [
            flow("main", START, {"from": "Task1", "to": "sub", "selective": {"tasks": ["X"]}}),
            flow("sub", {"from": [], "to": ["X", "Z"]}, {"from": "X", "to": "Y"}),
        ],
    )
    result = run(built, "main")
    assert result.state == "succeeded" and runs_per_task() == {"Task1": 1, "X": 1}
    with pytest.raises(ConfigurationError, match=r"flow 'main': edges\[1\]: selective run: task 'Task1' is not run"):
        system(
            [task("Task1"), task("X")],
            [
                flow("main", START, {"from": "Task1", "to": "sub", "selective": {"tasks": ["Task1"]}}),
                flow("sub", {"from": [], "to": "X"}),
            ],
        )
    with pytest.raises(ConfigurationError, match="selective: a selective run starts one sub-flow"):
        system([task("Task1"), task("X")], [flow("main", START, {"from": "Task1", "to": "X", "selective": {}})])
