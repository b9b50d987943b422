"""Platform facts on nodes: what each SGX node's platform is and how Intel judges it now.

A node's platform is what the PCS registered for it (FMSPC, PCK CA type, the TCB its PCK
certificate states); its status is the TCB Info level of its family that those SVNs
reach, under the newest TCB evaluation the operator fetched. They become labels, so the
scheduler can place by them and ``kubectl get nodes -L`` shows them:

``kubetee.io/sgx-fmspc``, ``kubetee.io/sgx-pck-ca``, ``kubetee.io/sgx-tcb-status``,
``kubetee.io/sgx-tcb-evaluation`` (the ``tcbEvaluationDataNumber``); the advisories the
platform is affected by are the annotation ``kubetee.io/sgx-tcb-advisories``.

The Quoting Enclave's own level is not part of a node's status: the registry does not
record the QE's SVN; the attestation service still converges both for every quote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetee.attestation.tcb import TcbInfo
from kubetee.pcs.registry import PlatformRecord
from kubetee.tcb.names import (
    ADVISORIES_ANNOTATION,
    FMSPC_LABEL,
    PCK_CA_LABEL,
    TCB_EVALUATION_LABEL,
    TCB_STATUS_LABEL,
)

BELOW_EVERY_LEVEL = "Revoked"
"""A platform below every level of its TCB Info cannot attest: as good as revoked."""


@dataclass(frozen=True, slots=True)
class PlatformTcb:
    """One node's platform and its TCB status under one evaluation."""

    node: str
    fmspc: str
    ca: str
    status: str
    advisories: tuple[str, ...]
    evaluation: int

    def labels(self) -> dict[str, str]:
        return {
            FMSPC_LABEL: self.fmspc,
            PCK_CA_LABEL: self.ca,
            TCB_STATUS_LABEL: self.status,
            TCB_EVALUATION_LABEL: str(self.evaluation),
        }

    def annotations(self) -> dict[str, str]:
        return {ADVISORIES_ANNOTATION: ",".join(self.advisories)}


def judge_platform(record: PlatformRecord, tcb_info: TcbInfo) -> PlatformTcb | None:
    """The node's status under ``tcb_info``; None when the record lacks its TCB or the
    TCB Info is another family's."""
    tcb = record.tcb()
    if tcb is None or tcb_info.fmspc.hex().upper() != record.fmspc:
        return None
    components, pcesvn = tcb
    level = tcb_info.matching_level(components, pcesvn)
    return PlatformTcb(
        node=record.node,
        fmspc=record.fmspc,
        ca=record.ca,
        status=level.status if level is not None else BELOW_EVERY_LEVEL,
        advisories=level.advisory_ids if level is not None else (),
        evaluation=tcb_info.tcb_evaluation_data_number,
    )


def node_patch(labels: Mapping[str, str], facts: PlatformTcb) -> dict[str, Any] | None:
    """The merge patch that makes a node's labels say ``facts``; None when they do.

    The advisories change only with a new evaluation, whose number is a label: comparing
    the labels is enough to know the annotation is current.
    """
    if all(labels.get(key) == value for key, value in facts.labels().items()):
        return None
    return {"metadata": {"labels": facts.labels(), "annotations": facts.annotations()}}
