"""The sidecar's probes: pass while the runtime has attested and delivered.

It runs as a separate process in the sidecar container (an exec probe), with the same
environment, so it finds the marker where the runtime writes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from enclave_runtime.runtime.marker import DEFAULT_SECRETS_DIR, problem_file, started_marker


def marker_dir_from_env(environ: Mapping[str, str]) -> Path:
    """The runtime's marker directory, by the same precedence as its settings."""
    root = Path(environ.get("KUBETEE_ROOT") or "/")
    for variable in ("KUBETEE_STATE_DIR", "KUBETEE_SECRETS_DIR"):
        if environ.get(variable):
            return _inside(root, Path(environ[variable]))
    try:
        config = json.loads(environ.get("KUBETEE_ENCLAVE_CONFIG", "{}"))
        return _inside(root, Path(config["secretsDir"]))
    except (ValueError, KeyError, TypeError):
        return _inside(root, DEFAULT_SECRETS_DIR)


def _inside(root: Path, path: Path) -> Path:
    return root / path.relative_to(path.anchor) if path.is_absolute() else path


def probe(state_dir: Path) -> tuple[bool, str]:
    """(passed, what to print)."""
    marker = started_marker(state_dir)
    problem = _problem(state_dir)
    try:
        document = json.loads(marker.read_text())
    except FileNotFoundError:
        return False, f"not attested yet{problem}"
    except (OSError, ValueError) as exc:
        return False, f"attestation marker unreadable: {exc}"
    again = f"; re-attestation failing{problem}" if problem else ""
    return True, f"attested, enclave {str(document.get('mrenclave', ''))[:16]}{again}"


def _problem(state_dir: Path) -> str:
    """``: <reason>: <message>`` of the last failed round, or nothing."""
    try:
        document = json.loads(problem_file(state_dir).read_text())
        return f": {document['reason']}: {document['message']}"
    except (OSError, ValueError, KeyError, TypeError):
        return ""
