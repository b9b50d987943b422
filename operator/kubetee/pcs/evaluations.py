"""Publishing a newer TCB evaluation, as Intel does when it assesses a new vulnerability.

``kubetee pcs publish-tcb`` changes the simulated authority's TCB levels of one platform
family (FMSPC): a new UpToDate level requires a higher SVN of one TCB component (the
microcode that fixes it) and optionally a higher PCESVN; every earlier level is marked
no better than ``previous_status`` and affected by the new advisory; the authority's
``tcbEvaluationDataNumber`` goes up by one. The running PCS notices the changed
``authority.json`` at its next request and signs collateral from it
(:class:`kubetee.pcs.stores.SimulatedStore`); verifiers learn of it when they renew
their cached collateral.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from enclave_runtime.sgx.authority import AuthoritySettings, TcbLevel

SETTINGS_FILE = "authority.json"
# Best first, as Intel's QVL ranks them; a published status never makes a level better.
STATUS_RANK = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
DOWNGRADE_STATUSES = STATUS_RANK[1:]
_ADVISORY = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,63}$")


class PublishError(ValueError):
    """The evaluation cannot be published as asked; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Published:
    """What a publication changed: the family, its new levels and evaluation number."""

    fmspc: bytes
    tcb_evaluation_data_number: int
    levels: tuple[TcbLevel, ...]

    def to_json(self) -> dict[str, object]:
        newest = self.levels[0]
        return {
            "fmspc": self.fmspc.hex().upper(),
            "tcbEvaluationDataNumber": self.tcb_evaluation_data_number,
            "upToDate": {"cpusvn": bytes(newest.components).hex(), "pcesvn": newest.pcesvn},
            "tcbLevels": [level.to_json() for level in self.levels],
        }


def _worse(status: str, floor: str) -> str:
    rank = {name: index for index, name in enumerate(STATUS_RANK)}
    return status if rank.get(status, 0) >= rank[floor] else floor


def publish(
    settings: AuthoritySettings,
    fmspc: bytes,
    *,
    raise_component: int,
    pcesvn: int | None,
    previous_status: str,
    advisories: tuple[str, ...],
    now: datetime,
) -> Published:
    """Change ``settings`` in place to the next TCB evaluation of family ``fmspc``."""
    if fmspc not in settings.fmspcs:
        known = ", ".join(f.hex().upper() for f in settings.fmspcs)
        raise PublishError(f"FMSPC {fmspc.hex().upper()} is not a family of this PCS ({known})")
    if not 0 <= raise_component < 16:
        raise PublishError("--raise-component is the index of an SGX TCB component, 0..15")
    if previous_status not in DOWNGRADE_STATUSES:
        raise PublishError(
            f"--previous-status must be one of {', '.join(DOWNGRADE_STATUSES)}, not "
            f"{previous_status[:40]!r}"
        )
    bad = [a for a in advisories if not _ADVISORY.match(a)]
    if bad:
        raise PublishError(f"advisory ids are upper-case like INTEL-SA-00615, not {bad[0][:70]!r}")
    levels = settings.levels_for(fmspc)
    newest = next((level for level in levels if level.status == "UpToDate"), levels[0])
    components = list(newest.components)
    if components[raise_component] >= 255:
        raise PublishError(f"TCB component {raise_component} is at 255 already")
    components[raise_component] += 1
    new_pcesvn = max(newest.pcesvn, pcesvn if pcesvn is not None else newest.pcesvn)
    if pcesvn is not None and not 0 <= pcesvn <= 0xFFFF:
        raise PublishError("--pcesvn is 0..65535")
    fixed = TcbLevel("UpToDate", tuple(components), new_pcesvn, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    older = tuple(
        replace(
            level,
            status=_worse(level.status, previous_status),
            advisory_ids=(
                *level.advisory_ids,
                *(a for a in advisories if a not in level.advisory_ids),
            ),
        )
        for level in levels
    )
    settings.family_tcb_levels[fmspc] = (fixed, *older)
    settings.tcb_evaluation_data_number += 1
    return Published(fmspc, settings.tcb_evaluation_data_number, (fixed, *older))


def load_settings(authority_dir: Path) -> AuthoritySettings:
    path = authority_dir / SETTINGS_FILE
    try:
        return AuthoritySettings.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise PublishError(f"{authority_dir} holds no authority; run `kubetee pcs init`") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PublishError(f"{path} is not readable: {error}") from None


def seed_state(authority_dir: Path, state_dir: Path) -> AuthoritySettings:
    """The settings in ``state_dir``, copied there from ``authority_dir`` unless it holds
    some already (a restarted container keeps what was published in its pod's life)."""
    try:
        return load_settings(state_dir)
    except PublishError:
        pass
    try:
        settings = load_settings(authority_dir)
    except PublishError as error:
        raise ValueError(str(error)) from None
    save_settings(state_dir, settings)
    return settings


def save_settings(authority_dir: Path, settings: AuthoritySettings) -> None:
    """Write ``authority.json`` whole (rename), so the PCS never reads half a file."""
    text = json.dumps(settings.to_json(), indent=2) + "\n"
    handle, temporary = tempfile.mkstemp(dir=authority_dir, prefix=".authority.", suffix=".json")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        Path(temporary).replace(authority_dir / SETTINGS_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
