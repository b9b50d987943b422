"""The simulated-fault control file.

There is no SGX hardware to fail here, so a fault is simulated: ``kubetee device-plugin
fault`` writes ``<plugin dir>/kubetee-faults.json``, e.g. ``{"unhealthyMib": 32,
"unhealthyEnclaves": 0}``, and the running plugin, which polls that file, marks that many
devices unhealthy and streams the new health to the kubelet at once. Removing the file
(``fault --clear``) makes every device healthy again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetee.deviceplugin.errors import FaultFileError


@dataclass(frozen=True, slots=True)
class Faults:
    """How many devices of each resource a simulated fault takes out."""

    unhealthy_mib: int = 0
    unhealthy_enclaves: int = 0

    def to_json(self) -> dict[str, int]:
        return {"unhealthyMib": self.unhealthy_mib, "unhealthyEnclaves": self.unhealthy_enclaves}


NO_FAULTS = Faults()


def _count(raw: dict[str, Any], key: str, path: Path) -> int:
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FaultFileError(f"{path}: {key} must be a whole number >= 0, got {value!r}")
    return value


def read_faults(path: Path) -> Faults:
    """The faults the file asks for; no file means no faults."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return NO_FAULTS
    except (OSError, ValueError) as error:
        raise FaultFileError(f"{path}: cannot read fault file: {error}") from None
    if not isinstance(raw, dict):
        raise FaultFileError(f"{path}: expected a JSON object like {NO_FAULTS.to_json()}")
    unknown = set(raw) - set(NO_FAULTS.to_json())
    if unknown:
        raise FaultFileError(f"{path}: unknown keys {sorted(unknown)}")
    return Faults(_count(raw, "unhealthyMib", path), _count(raw, "unhealthyEnclaves", path))


def write_faults(path: Path, faults: Faults) -> None:
    """Replace the file atomically, so the plugin never reads half of it."""
    if faults == NO_FAULTS:
        path.unlink(missing_ok=True)
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(faults.to_json()), encoding="utf-8")
    partial.replace(path)
