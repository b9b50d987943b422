"""Provisioning simulated SGX nodes: a node makes its own platform keys.

:func:`provision_keys` is what a node does (``kubetee quoting-service provision``): a new
platform (PPID, PCK key, attestation key) of a chosen family and PCK CA type, kept in
the node's platform directory; its PCK certificate comes from registering with the
cluster's simulated PCS (:mod:`enclave_runtime.quoting.registration`). Both steps are
idempotent, so a restarted node keeps its platform (nodes stay distinguishable).

:func:`provision` issues keys and certificate in one process from an authority
directory: for tests and benchmarks only, where no PCS runs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from enclave_runtime.sgx.authority import DEFAULT_FMSPC, SimulatedAuthority, new_platform_identity
from enclave_runtime.sgx.platform import (
    PCK_CHAIN_FILE,
    PlatformKeys,
    SimulatedPlatform,
    is_registered,
)

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


def provision_keys(
    platform_dir: Path | str,
    node_name: str,
    *,
    tcb_status: str = "UpToDate",
    fmspc: bytes = DEFAULT_FMSPC,
    ca: str = "processor",
) -> PlatformKeys:
    """The node's platform keys in ``platform_dir``, made on first use.

    An existing platform is kept as it is (whatever the arguments say now); remove the
    directory to make a new one, which must then register again.
    """
    path = Path(platform_dir)
    if (path / _PLATFORM_FILE).exists():
        return PlatformKeys.load(path)
    keys = PlatformKeys.generate(new_platform_identity(tcb_status, fmspc=fmspc, ca=ca))
    keys.save(path)
    (path / NODE_FILE).write_text(
        json.dumps({"node": node_name, "tcb_status": tcb_status}, indent=2) + "\n"
    )
    return keys


def registered(platform_dir: Path | str) -> bool:
    """Whether the platform in ``platform_dir`` has its PCK certificate."""
    return is_registered(platform_dir)


def node_name_of(platform_dir: Path | str, default: str) -> str:
    """The node a platform directory was provisioned for, else ``default``."""
    try:
        document = json.loads((Path(platform_dir) / NODE_FILE).read_text())
    except (OSError, ValueError):
        return default
    return str(document.get("node", default)) if isinstance(document, dict) else default


class PlatformUpdateError(ValueError):
    """A platform update that would not raise the TCB; nothing was changed."""


def update_platform(
    platform_dir: Path | str, cpusvn: bytes, pcesvn: int | None = None
) -> PlatformKeys:
    """Update the platform's TCB, as a microcode (CPUSVN) or platform software (PCESVN)
    update does; its PPID and keys stay. Its PCK certificate stated the old TCB, so it is
    removed: register again to get one for the new TCB (the quoting service keeps
    quoting with the old one until then, and switches when the new one is saved).
    """
    path = Path(platform_dir)
    keys = PlatformKeys.load(path)
    current = keys.identity
    new_pcesvn = current.pcesvn if pcesvn is None else pcesvn
    if len(cpusvn) != 16:
        raise PlatformUpdateError("CPUSVN is 16 bytes (32 hex digits)")
    if not 0 <= new_pcesvn <= 0xFFFF:
        raise PlatformUpdateError("PCESVN is 0..65535")
    lower = [
        i for i, (new, old) in enumerate(zip(cpusvn, current.cpusvn, strict=True)) if new < old
    ]
    if lower or new_pcesvn < current.pcesvn:
        raise PlatformUpdateError(
            "an update raises the TCB; it would lower "
            + (f"CPUSVN components {lower}" if lower else f"PCESVN {current.pcesvn}")
        )
    if cpusvn == current.cpusvn and new_pcesvn == current.pcesvn:
        raise PlatformUpdateError("the platform is at this TCB already")
    updated = PlatformKeys(
        identity=dataclasses.replace(current, cpusvn=cpusvn, pcesvn=new_pcesvn),
        pck_key=keys.pck_key,
        attestation_key=keys.attestation_key,
    )
    document = json.loads((path / _PLATFORM_FILE).read_text())
    document["identity"] = updated.identity.to_json()
    (path / _PLATFORM_FILE).write_text(json.dumps(document, indent=2) + "\n")
    (path / PCK_CHAIN_FILE).unlink(missing_ok=True)
    return updated
