"""Run the `selinon` command in this process, as a user would from a shell: its exit code and what it printed."""

from __future__ import annotations

import pytest

from selinon.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, standard output, standard error) of ``selinon ARGV...``."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
