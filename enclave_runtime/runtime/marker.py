"""Where the runtime marks a replica attested: the file the probes check.

Standard library only: the probes run as a new process every few seconds, so what they
import is paid on every probe (on a loaded node a heavy import is a failed probe).
"""

from __future__ import annotations

from pathlib import Path

STARTED_MARKER = ".kubetee-attested"
PROBLEM_FILE = ".kubetee-attestation-problem"
DEFAULT_SECRETS_DIR = Path("/run/kubetee/secrets")


def started_marker(state_dir: Path) -> Path:
    """The file whose presence the startup and readiness probes check."""
    return state_dir / STARTED_MARKER


def problem_file(state_dir: Path) -> Path:
    """Why the last attestation round could not complete; absent after a success."""
    return state_dir / PROBLEM_FILE
