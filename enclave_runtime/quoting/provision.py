"""Provisioning simulated SGX nodes: one authority per cluster, one platform per node.

The local cluster tooling calls :func:`provision` once per node; the first call
creates the cluster's authority. Both are idempotent, so a restarted cluster keeps its
root of trust and each node keeps its PCK certificate (nodes stay distinguishable).
"""

from __future__ import annotations

import json
from pathlib import Path

from enclave_runtime.sgx.authority import SimulatedAuthority
from enclave_runtime.sgx.platform import SimulatedPlatform

_AUTHORITY_FILE = "authority.json"
_PLATFORM_FILE = "platform.json"
NODE_FILE = "node.json"
"""Written next to a platform: the node it belongs to and the TCB status it was issued at."""


def ensure_authority(authority_dir: Path | str) -> SimulatedAuthority:
    """Load the cluster's simulated authority, creating it on first use."""
    path = Path(authority_dir)
    if (path / _AUTHORITY_FILE).exists():
        return SimulatedAuthority.load(path)
    authority = SimulatedAuthority.generate()
    authority.save(path)
    return authority


def provision(
    authority_dir: Path | str,
    platform_dir: Path | str,
    node_name: str,
    *,
    tcb_status: str = "UpToDate",
) -> SimulatedPlatform:
    """The node's simulated platform in ``platform_dir``, issued by the cluster authority.

    An existing platform is kept as it is (whatever ``tcb_status`` says now); remove the
    directory to issue a new one.
    """
    path = Path(platform_dir)
    if (path / _PLATFORM_FILE).exists():
        return SimulatedPlatform.load(path)
    platform = ensure_authority(authority_dir).issue_platform(tcb_status)
    platform.save(path)
    (path / NODE_FILE).write_text(
        json.dumps({"node": node_name, "tcb_status": tcb_status}, indent=2) + "\n"
    )
    return platform


def node_name_of(platform_dir: Path | str, default: str) -> str:
    """The node a platform directory was provisioned for, else ``default``."""
    try:
        document = json.loads((Path(platform_dir) / NODE_FILE).read_text())
    except (OSError, ValueError):
        return default
    return str(document.get("node", default)) if isinstance(document, dict) else default
