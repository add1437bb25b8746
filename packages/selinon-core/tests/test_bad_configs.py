"""The corpus of bad configurations in bad_configs/: each fails with one clear line, in the library and the CLI.

Each file's first line says what the error must contain: ``# expect: <text>``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from selinon import ConfigurationError, StoragePool
from selinon.cli import main
from selinon.config import load
from selinon.pool import instantiate

CORPUS = sorted((Path(__file__).parent / "bad_configs").glob("*.yaml"))
#: Files written to hurt the loader (alias bombs, cycles, huge numbers, non-finite retry values).
HOSTILE = [p for p in CORPUS if p.stem.startswith(("yaml_", "retry_"))]

MEASURE = """
import resource, sys, time
from selinon.config import load
from selinon.errors import ConfigurationError
start = time.perf_counter()
try:
    load(sys.argv[1])
except ConfigurationError:
    print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: '"
    return first.removeprefix("# expect: ")


def library_error(path: Path) -> str:
    with pytest.raises(ConfigurationError) as raised:
        for storage in load(path).storages.values():
            instantiate(storage)
    return str(raised.value)


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_bad_configuration(path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SELINON_TEST_UNSET_VARIABLE", raising=False)
    message = library_error(path)
    assert message.startswith(f"{path}"), message  # names the file first
    assert expected(path) in message
    assert "\n" not in message

    with pytest.raises(SystemExit) as exit_:
        main(["storages", "check", "-c", str(path)])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert out == ""
    assert err == f"selinon: error: {message}\n"  # the same text, one line, no traceback


def test_pool_raises_the_same_error(tmp_path: Path) -> None:
    path = next(p for p in CORPUS if p.stem == "unexpected_option")
    StoragePool.configure(path)
    with pytest.raises(ConfigurationError) as raised:
        StoragePool.get_connected_storage("S")
    assert str(raised.value) == library_error(path)


@pytest.mark.parametrize("path", HOSTILE, ids=[p.stem for p in HOSTILE])
def test_hostile_configuration_is_refused_within_a_second_and_100_mb(path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=30, check=True
    )
    seconds, max_rss_kb = done.stdout.split()
    assert float(seconds) < 1.0
    assert int(max_rss_kb) < 100 * 1024
