"""The test kit proven on itself: the contract suite and the fault drills pass on the reference adapter, and
fail on each variant of it with one classic bug planted (planted_bugs.py), in the tests named for that bug.

One pytest run in a subprocess, on a module generated here: the kit's suites are pytest classes, and a failure
they report must stay a result to check, not fail this test on the spot.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import planted_bugs

from selinon.testing import require_service

TESTS = Path(__file__).parent


def test_every_planted_bug_is_caught(tmp_path: Path) -> None:
    require_service("Redis", "127.0.0.1", 6379, "start the machine's Redis (redis-server --port 6379)")
    lines = [
        "from reference_kit import ReferenceContract, ReferenceDrills, redis_keys  # noqa: F401",
        "class TestReferenceContract(ReferenceContract): pass",
        "class TestReferenceDrills(ReferenceDrills): pass",
    ]
    selected = ["generated_test.py::TestReferenceContract", "generated_test.py::TestReferenceDrills"]
    for bug, tests in planted_bugs.CAUGHT_BY.items():
        for suite in sorted({test.split("::")[0] for test in tests}):
            lines.append(f"class Test{bug.__name__}{suite}(Reference{suite}): adapter = {bug.__name__!r}")
        selected += [f"generated_test.py::Test{bug.__name__}{test}" for test in tests]
    (tmp_path / "generated_test.py").write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.xml"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
         f"--junitxml={report}", "--timeout=120", *selected],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    outcomes: dict[tuple[str, str], list[str]] = defaultdict(list)  # by (class, test function)
    for case in ET.parse(report).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        where = (case.get("classname", "").rpartition(".")[2], case.get("name", "").partition("[")[0])
        outcomes[where].append("failed" if failed else "skipped" if skipped else "passed")
    reference = {where: set(found) for where, found in outcomes.items() if where[0].startswith("TestReference")}
    assert reference and all(found == {"passed"} for found in reference.values()), (
        "the reference adapter does not pass the whole kit:\n" + done.stdout[-4000:]
    )
    missed = []
    for bug, tests in planted_bugs.CAUGHT_BY.items():
        for test in tests:
            suite, function = test.split("::")
            found = outcomes[(f"Test{bug.__name__}{suite}", function)]
            if "failed" not in found:
                missed.append(f"{bug.__name__}: {test} {found}")
    assert not missed, f"planted bugs the kit did not catch: {missed}"
