"""How much of its EPC a simulated enclave uses, and where that figure comes from.

A real SGX2 enclave commits EPC pages as its code allocates (EDMM); a simulated one
has no pages. In a container (a real node) its use is *measured*: the workload's memory
in the runtime's container cgroup (:mod:`kubetee.metrics.cgroup`), capped at the
enclave's size. Where no container runs (KWOK nodes of the local cluster) it is
*reported* to the runtime instead, by two reporters, the first one present wins:

1. the pod annotation ``kubetee.io/simulated-epc-usage``, read from the pod's downward
   API annotations file (``KUBETEE_PODINFO_DIR/annotations``, which the kubelet, or the
   local cluster's node agent, keeps up to date): the knob for demos and tests, and
   the only reporter on simulated nodes, where no workload container runs;
2. the file ``KUBETEE_EPC_USAGE_FILE`` that the workload writes in a volume it shares
   with the runtime (its in-enclave allocations).

Neither present: the enclave uses nothing yet (0 bytes). A value is a size
(``48Mi``, ``512Ki``, ``1Gi``, plain bytes) or a percentage of the enclave (``75%``);
values beyond the enclave are clamped to its size, as an enclave cannot commit more
EPC than it was built with.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from enclave_runtime.runtime.requests import read_annotation
from kubetee.metrics.errors import UsageValueError
from kubetee.metrics.names import SIMULATED_USAGE_ANNOTATION

log = logging.getLogger(__name__)

_UNITS = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 1000**2, "G": 1000**3}
_VALUE = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>%|Ki|Mi|Gi|k|M|G|)$")


def parse_usage(value: str, size_bytes: int) -> int:
    """Bytes in use that ``value`` reports for an enclave of ``size_bytes``."""
    match = _VALUE.match(value.strip())
    if match is None:
        raise UsageValueError(
            f"EPC usage {value[:40]!r} is not a size such as 48Mi or a percentage such as 75%"
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation as error:  # pragma: no cover - the regex admits only decimals
        raise UsageValueError(f"EPC usage {value[:40]!r} is not a number") from error
    unit = match["unit"]
    used = number * size_bytes / 100 if unit == "%" else number * _UNITS[unit]
    return int(min(used, Decimal(size_bytes)))


@dataclass
class EnclaveUsage:
    """The EPC use of one enclave, measured or read from its reporters when asked.

    ``measure`` (bytes in use now, OSError/ValueError when unreadable) replaces the
    reporters when given.
    """

    size_bytes: int
    podinfo_dir: Path | None = None
    usage_file: Path | None = None
    measure: Callable[[], int] | None = None
    read_errors: int = 0
    _last: int = 0
    _bad: str | None = field(default=None, repr=False)

    def reported(self) -> tuple[str, str] | None:
        """(source, raw value) of the reporter that has a value, if any."""
        if self.podinfo_dir is not None:
            value = read_annotation(self.podinfo_dir, SIMULATED_USAGE_ANNOTATION)
            if value:
                return SIMULATED_USAGE_ANNOTATION, value
        if self.usage_file is not None:
            try:
                text = self.usage_file.read_text().strip()
            except OSError:
                return None
            if text:
                return str(self.usage_file), text
        return None

    def used_bytes(self) -> int:
        """Bytes in use now; a malformed report keeps the last good figure (and counts)."""
        if self.measure is not None:
            return self._measured(self.measure)
        reported = self.reported()
        if reported is None:
            self._last = 0
            return 0
        source, raw = reported
        try:
            self._last = parse_usage(raw, self.size_bytes)
        except UsageValueError as error:
            self.read_errors += 1
            if raw != self._bad:  # once per bad value, not once per scrape
                log.warning("ignoring the EPC usage from %s: %s", source, error)
            self._bad = raw
            return self._last
        self._bad = None
        return self._last

    def _measured(self, measure: Callable[[], int]) -> int:
        try:
            self._last = min(max(0, measure()), self.size_bytes)
        except (OSError, ValueError) as error:
            self.read_errors += 1
            if self._bad != str(error):
                log.warning("cannot measure the EPC in use: %s", error)
            self._bad = str(error)
            return self._last
        self._bad = None
        return self._last
