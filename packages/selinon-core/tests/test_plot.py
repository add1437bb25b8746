"""`selinon plot`: every node and edge of a flow in the picture, as SVG (read back with xml.etree), DOT and
Mermaid; the fallback to DOT text without Graphviz; conditions as short readable text."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from clikit import run

from selinon import flows
from selinon.flows import plot
from selinon.flows.conditions import parse
from selinon.testing.services import unavailable

TESTS = Path(__file__).parent
CATALOG = TESTS / "fixtures" / "catalog"
CATALOG_CONFIG = ["-c", str(CATALOG / "nodes.yaml"), "-c", str(CATALOG / "flows.yaml")]
EXAMPLE = TESTS.parents[2] / "examples" / "flow"
EXAMPLE_CONFIG = ["-c", str(EXAMPLE / "nodes.yaml"), "-c", str(EXAMPLE / "flows.yaml")]
DOCS_PICTURE = TESTS.parent / "docs" / "orderFlow.svg"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def dot() -> None:
    """Graphviz's dot, which draws SVG and PNG: a test that needs it skips without it, and fails with CI=true."""
    if shutil.which("dot") is None:
        unavailable("Graphviz's dot", "Graphviz's dot is not installed (apt-get install graphviz)")


needs_dot = pytest.mark.usefixtures("dot")


@pytest.fixture(autouse=True)
def keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


def svg_graph(path: Path) -> tuple[set[str], list[tuple[str, str]], dict[str, ET.Element]]:
    """Node names, edges (tail, head) and each group by title, from Graphviz's SVG: every node and edge is a
    `<g class="node|edge">` whose `<title>` names it ("tail->head" for an edge)."""
    root = ET.parse(path).getroot()
    nodes, edges, groups = set(), [], {}
    for group in root.iter(f"{SVG}g"):
        title = group.find(f"{SVG}title")
        if title is None or group.get("class") not in ("node", "edge"):
            continue
        text = title.text or ""
        groups[text] = group
        if group.get("class") == "node":
            nodes.add(text)
        else:
            tail, _, head = text.partition("->")
            edges.append((tail, head))
    return nodes, edges, groups


def texts(group: ET.Element) -> list[str]:
    """The lines of text in a node or edge group (Graphviz keeps indentation as no-break spaces)."""
    return [(t.text or "").replace("\xa0", " ").strip() for t in group.iter(f"{SVG}text")]


def reaches(edges: list[tuple[str, str]], tail: str, head: str) -> bool:
    """``head`` is reached from ``tail`` by a line, or through one junction point."""
    return (tail, head) in edges or any(t == tail and (h, head) in edges and h.startswith("(") for t, h in edges)


def raw_flows(*files: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in files:
        for entry in yaml.safe_load(path.read_text()).get("flow-definitions", []):
            found[entry["name"]] = entry
    return found


def names(value: Any) -> list[str]:
    return [] if value in (None, True) else [value] if isinstance(value, str) else list(value)


def check_picture(path: Path, definition: dict[str, Any], subflows: set[str]) -> dict[str, ET.Element]:
    """Every node of the flow is in the picture, and every edge and fallback of its YAML joins what it joins."""
    nodes, edges, groups = svg_graph(path)
    expected = {n for e in definition["edges"] for n in names(e.get("from")) + names(e["to"])}
    for failure in definition.get("failures", []):
        expected |= set(names(failure["nodes"])) | set(names(failure["fallback"]))
    assert expected | {"(start)"} <= nodes, expected - nodes
    for index, edge in enumerate(definition["edges"]):
        for source in names(edge.get("from")) or ["(start)"]:
            for target in names(edge["to"]):
                assert reaches(edges, source, target), f"edges[{index}]: {source} -> {target} is not drawn"
    for index, failure in enumerate(definition.get("failures", [])):
        point = f"(failure {index})"
        for failed in names(failure["nodes"]):
            assert (failed, point) in edges, f"failures[{index}]: {failed} is not joined to its failure"
        for fallback in names(failure["fallback"]) or [f"(handled {index})"]:
            assert (point, fallback) in edges, f"failures[{index}]: fallback {fallback} is not drawn"
    for name in expected:  # tasks are rounded boxes (a path), sub-flows 3-D boxes (polygons)
        shapes = {child.tag.removeprefix(SVG) for child in groups[name]}
        assert ("polygon" in shapes) == (name in subflows), (name, shapes)
    return groups


@needs_dot
def test_svg_of_a_large_flow_has_every_node_edge_and_marking(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sys.path.insert(0, str(TESTS))
    code, out, err = run(capsys, "plot", *CATALOG_CONFIG, "-o", str(tmp_path))
    assert code == 0, err
    written = sorted(out.split())
    assert written == sorted(str(tmp_path / f"{name}.svg") for name in ("catalogFlow", "packageFlow", "reportFlow"))
    definitions = raw_flows(CATALOG / "flows.yaml")
    for name, definition in definitions.items():
        check_picture(tmp_path / f"{name}.svg", definition, set(definitions))
    groups = check_picture(tmp_path / "catalogFlow.svg", definitions["catalogFlow"], set(definitions))
    nodes = svg_graph(tmp_path / "catalogFlow.svg")[0]
    assert len({n for n in nodes if not n.startswith("(")}) >= 20

    def style(tail: str, head: str) -> tuple[str, str, str]:
        path = groups[f"{tail}->{head}"].find(f"{SVG}path")
        assert path is not None
        return path.get("stroke", ""), path.get("stroke-dasharray", ""), path.get("stroke-width", "1")

    plain, foreach, failure = style("CheckLicense", "Quarantine"), style("EnrichMetadata", "FetchPackage"), None
    failure = style("BuildGraph", "(failure 0)")
    assert plain[1] == "" and foreach[1] == "" and failure[1], "failure lines are dashed, the others are not"
    assert len({plain[0], foreach[0], failure[0]}) == 3, "plain, foreach and failure lines have their own colours"
    assert float(foreach[2]) > float(plain[2]), "foreach lines are thicker"
    assert style("(failure 0)", "RecordFailure")[1] and style("(failure 1)", "(handled 1)")[1]
    # Conditions, foreach functions and selective runs are written on the edges, once each.
    label = " ".join(texts(groups["CheckLicense->Quarantine"]))
    assert label == "not(fieldExist(key='license'))"
    assert texts(groups["FetchIndex->ParseIndex"]) == ["fieldEqual(key=['response', 'status'],", "value=200)"]
    joined = " ".join(texts(groups["(edge 3)->CheckLicense"]))
    assert joined.startswith("and( fieldExist(node=ValidateSchema,") and "argsFieldEqual(key='dry_run'," in joined
    assert texts(groups["EnrichMetadata->packageFlow"])[0] == "foreach flow_tasks.items_of_args"
    assert "×2" in texts(groups["EnrichMetadata->FetchPackage"]), "a node listed twice starts twice"
    assert "selective: PublishReport" in texts(groups["(edge 10)->reportFlow"])
    assert "if argsFieldEqual(key='optional', value=True)" in texts(groups["(failure 1)->(handled 1)"])
    # nowait nodes are dashed and say so; the legend names what the picture uses.
    notify = groups["NotifyOwners"]
    assert texts(notify) == ["NotifyOwners", "(nowait)"]
    assert any(child.get("stroke-dasharray") for child in notify if child.tag != f"{SVG}title")
    legend = " ".join(texts(groups["(legend)"]))
    for entry in ("sub-flow", "nowait", "foreach", "failure, and the fallback it starts"):
        assert entry in legend
    assert "sub-flow" not in " ".join(texts(svg_graph(tmp_path / "packageFlow.svg")[2]["(legend)"]))


@needs_dot
def test_the_example_flow_and_the_picture_in_the_docs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "plot", *EXAMPLE_CONFIG, "orderFlow", "-o", str(tmp_path), "--format", "png")
    assert code == 0 and err == "" and out == f"{tmp_path / 'orderFlow.png'}\n"
    assert (tmp_path / "orderFlow.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    definition = raw_flows(EXAMPLE / "flows.yaml")["orderFlow"]
    code, _, _ = run(capsys, "plot", *EXAMPLE_CONFIG, "-o", str(tmp_path))
    assert code == 0
    check_picture(tmp_path / "orderFlow.svg", definition, set())
    # The picture committed under docs/ is this command's output for the example as it is now.
    check_picture(DOCS_PICTURE, definition, set())
    assert svg_graph(DOCS_PICTURE)[:2] == svg_graph(tmp_path / "orderFlow.svg")[:2]


def dot_titles(source: str, tmp_path: Path) -> tuple[set[str], list[tuple[str, str]], dict[str, ET.Element]]:
    path = tmp_path / "rendered.svg"
    subprocess.run(["dot", "-Tsvg", "-o", str(path)], input=source, text=True, check=True)
    return svg_graph(path)


@needs_dot
def test_dot_text_is_the_same_graph_with_or_without_the_graphviz_package(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.path.insert(0, str(TESTS))
    code, out, _ = run(capsys, "plot", *CATALOG_CONFIG, "catalogFlow", "-o", str(tmp_path / "a"), "--format", "dot")
    assert code == 0 and out == f"{tmp_path / 'a' / 'catalogFlow.dot'}\n"
    with_package = (tmp_path / "a" / "catalogFlow.dot").read_text()
    monkeypatch.setitem(sys.modules, "graphviz", None)  # as if the plot extra were not installed
    code, _, err = run(capsys, "plot", *CATALOG_CONFIG, "catalogFlow", "-o", str(tmp_path / "b"), "--format", "dot")
    assert code == 0 and err == ""  # dot and mermaid need no extra: nothing to say
    written_here = (tmp_path / "b" / "catalogFlow.dot").read_text()
    assert written_here.startswith('digraph "catalogFlow" {')
    a, b = dot_titles(with_package, tmp_path), dot_titles(written_here, tmp_path)
    assert a[0] == b[0] and sorted(a[1]) == sorted(b[1])
    assert {k: texts(v) for k, v in a[2].items()} == {k: texts(v) for k, v in b[2].items()}


@needs_dot
@pytest.mark.parametrize("package", [True, False], ids=["graphviz package", "DOT written here"])
def test_quotes_backslashes_and_angle_brackets_reach_the_picture_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package: bool
) -> None:
    value = 'say "hi" \\o/ <b>&amp;</b>'
    system = flows.from_documents(
        [
            ("nodes.yaml", {"tasks": [{"name": "T1", "import": "x"}, {"name": "T2", "import": "x"}]}),
            (
                "flows.yaml",
                {
                    "flow-definitions": [
                        {
                            "name": "quoted",
                            "edges": [
                                {"from": [], "to": "T1"},
                                {
                                    "from": "T1",
                                    "to": "T2",
                                    "condition": {"name": "argsFieldEqual", "args": {"key": "k", "value": value}},
                                },
                            ],
                        }
                    ]
                },
            ),
        ]
    )
    if not package:
        monkeypatch.setitem(sys.modules, "graphviz", None)
    source = plot.dot_source(plot.drawing(system, system.flows["quoted"]))
    _, _, groups = dot_titles(source, tmp_path)
    shown = " ".join(texts(groups["T1->T2"]))
    assert shown == f"argsFieldEqual(key='k', value={value!r})"


def test_without_dot_svg_falls_back_to_dot_text_with_one_line_saying_how_to_get_pictures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no dot on it
    code, out, err = run(capsys, "plot", *EXAMPLE_CONFIG, "-o", str(tmp_path), "--format", "svg")
    assert code == 0 and out == f"{tmp_path / 'orderFlow.dot'}\n" and not (tmp_path / "orderFlow.svg").exists()
    assert err.count("\n") == 1
    assert err.startswith("selinon: wrote DOT text instead of svg: Graphviz's dot program is not on the PATH;")
    assert "pip install 'selinon-core[plot]'" in err and "graphviz" in err
    assert (tmp_path / "orderFlow.dot").read_text().lstrip().startswith("digraph")


def test_without_the_graphviz_package_png_falls_back_to_dot_text(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "graphviz", None)
    code, out, err = run(capsys, "plot", *EXAMPLE_CONFIG, "-o", str(tmp_path), "--format", "png")
    assert code == 0 and out == f"{tmp_path / 'orderFlow.dot'}\n"
    assert err.startswith("selinon: wrote DOT text instead of png: the graphviz Python package is not installed;")
    assert err.count("\n") == 1 and "pip install 'selinon-core[plot]'" in err


def mermaid_lines(path: Path) -> Iterator[str]:
    return (line.strip() for line in path.read_text().splitlines())


def test_mermaid_has_every_node_and_line_with_its_style(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sys.path.insert(0, str(TESTS))
    code, out, _ = run(capsys, "plot", *CATALOG_CONFIG, "catalogFlow", "--format", "mermaid", "-o", str(tmp_path))
    assert code == 0 and out == f"{tmp_path / 'catalogFlow.mmd'}\n"
    lines = list(mermaid_lines(tmp_path / "catalogFlow.mmd"))
    assert lines[:2] == ["%% flow catalogFlow", "flowchart TB"]
    declared = dict(re.findall(r'^(n\d+)[(\[{]+"([^"]*)"', "\n".join(lines), re.M))
    ids = {label.split("<br/>")[0]: node for node, label in declared.items()}
    links = [line for line in lines if re.match(r"n\d+ [-=.]+>?", line)]
    definition = raw_flows(CATALOG / "flows.yaml")["catalogFlow"]
    for name in {n for e in definition["edges"] for n in names(e["to"]) + names(e.get("from"))}:
        assert name in ids, f"{name} is not declared"
    assert f"{ids['CheckLicense']} -->|\"not(fieldExist(key='license'))\"| {ids['Quarantine']}" in links
    assert f"{ids['EnrichMetadata']} ==>" in " ".join(links), "foreach lines are thick"
    fallback = [link for link in links if link.endswith(f"-.-> {ids['RecordFailure']}")]
    assert len(fallback) == 1, "failure and fallback lines are dotted"
    assert f'{ids["packageFlow"]}[["packageFlow"]]' in lines, "sub-flows have their own shape"
    assert f"class {ids['NotifyOwners']} nowait" in lines
    system = flows.load([CATALOG / "nodes.yaml", CATALOG / "flows.yaml"])
    drawing = plot.drawing(system, system.flows["catalogFlow"])
    assert len(links) == len(drawing.lines)
    assert sum(line.startswith("linkStyle") for line in lines) == sum(li.kind != "edge" for li in drawing.lines)


def test_named_flows_only_and_an_unknown_flow_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sys.path.insert(0, str(TESTS))
    code, out, _ = run(capsys, "plot", *CATALOG_CONFIG, "reportFlow", "--format", "dot", "-o", str(tmp_path))
    assert code == 0 and out == f"{tmp_path / 'reportFlow.dot'}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["reportFlow.dot"]
    code, out, err = run(capsys, "plot", *CATALOG_CONFIG, "reportFlw", "-o", str(tmp_path))
    assert code == 2 and out == ""
    assert err == "selinon: error: no flow named 'reportFlw'; did you mean 'reportFlow'?\n"


@pytest.mark.parametrize(
    ("tree", "sources", "text"),
    [
        ({"name": "fieldEqual", "args": {"key": ["a"], "value": 1}}, ["T"], "fieldEqual(key=['a'], value=1)"),
        ({"name": "fieldEqual", "node": "B", "args": {"key": "a", "value": 1}}, ["A", "B"],
         "fieldEqual(node=B, key='a', value=1)"),
        ({"and": [{"name": "isDict"}, {"not": {"name": "argsFieldExist", "args": {"key": "x"}}}]}, ["T"],
         "and(isDict(), not(argsFieldExist(key='x')))"),
        ({"or": [{"name": "alwaysFalse"}, {"name": "envExist", "args": {"env": "E"}}]}, [], "or(alwaysFalse(), envExist(env='E'))"),
    ],
)  # fmt: skip
def test_conditions_as_short_text(tree: dict[str, Any], sources: list[str], text: str) -> None:
    condition = parse(tree, sources, "here")
    assert condition.text(show_node=len(sources) > 1) == text
    assert parse(condition.tree(), sources, "here") == condition, "the normalised YAML form parses to the same"


def test_long_conditions_wrap_at_their_parts_and_arguments() -> None:
    leaves = [{"name": "fieldEqual", "args": {"key": ["licence", "spdx", "id"], "value": v}} for v in ("MIT", "0BSD")]
    condition = parse({"not": {"or": leaves}}, ["T"], "here")
    lines = plot.condition_lines(condition, width=40)
    assert all(len(line) <= 40 for line in lines), lines
    assert "".join(lines).replace(" ", "") == condition.text().replace(" ", "")
    assert lines[0] == "not(" and lines[1].strip() == "or("
