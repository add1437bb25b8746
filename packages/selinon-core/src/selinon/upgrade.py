"""Selinon 1.x files mixed with the core's: the one line that says how to repair the environment.

Selinon 1.x (distribution `selinon`) and `selinon-core` both install the import package `selinon`. pip neither
stops nor warns when one is installed over the other: `pip install selinon-core` writes over 1.x's files and
leaves 1.x's other modules in place (its packages such as `selinon/caches/` then shadow the core's modules of
those names), and `pip uninstall selinon` afterwards deletes the files the two distributions share. The core
therefore says it itself: at import when a 1.x module lies beside its own (one `stat`, done by ``selinon``'s
``__init__``), and from the `selinon` command when the core's own files are gone. docs/upgrading.md has the
measured behaviour of pip and the upgrade command that avoids both.
"""

from __future__ import annotations

import sys
import warnings

#: Removes 1.x (with the files it shares with the core), then writes the core's files back, dependencies untouched.
REPAIR = "pip uninstall --yes selinon && pip install --force-reinstall --no-deps selinon-core"
RESTORE = "pip install --force-reinstall --no-deps selinon-core"


class SelinonUpgradeWarning(UserWarning):
    """Selinon 1.x is installed in the same environment as selinon-core."""


def warn_mixed_install(marker: str) -> None:
    """Warn, in one line that names the 1.x module found, how to repair the environment."""
    message = (
        f"Selinon 1.x is installed over or under selinon-core (its modules are mixed with the core's); "
        f"repair with: {REPAIR}"
    )
    # Line 0 of the 1.x module: the warning is one line, without a source line under it.
    warnings.warn_explicit(message, SelinonUpgradeWarning, marker, 0)


def main() -> None:
    """The `selinon` command. When uninstalling Selinon 1.x deleted the core's files, say how to restore them."""
    try:
        from selinon.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("selinon."):
            raise
        sys.stderr.write(
            f"selinon: error: selinon-core's files are missing ({exc.name} is gone; uninstalling Selinon 1.x "
            f"deletes the files it shares with selinon-core); restore them with: {RESTORE}\n"
        )
        sys.exit(2)
    cli_main()
