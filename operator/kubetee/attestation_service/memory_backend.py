"""An in-process stand-in for the cluster: workloads, Secrets and outcomes in dicts.

For tests and the benchmark (which measures the service, not the apiserver), and for
a single-process demo. It implements the same protocols as the Kubernetes backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from kubetee.api.v1alpha1 import SecretKeyRef
from kubetee.attestation.errors import AttestationError
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation_service.errors import ResourceNotFoundError, WorkloadUnknownError
from kubetee.attestation_service.sessions import PodRef
from kubetee.attestation_service.workloads import EnclaveContainerView, Workload


@dataclass(frozen=True, slots=True)
class Outcome:
    pod: PodRef
    reason: str
    message: str


@dataclass
class InMemoryCluster:
    """EnclaveContainers by (namespace, name), pods by PodRef, Secret data by (ns, name)."""

    enclave_containers: dict[tuple[str, str], EnclaveContainerView] = field(default_factory=dict)
    pods: dict[PodRef, tuple[str, str]] = field(default_factory=dict)  # -> (ec name, node)
    secrets: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)

    async def workload_of(self, pod: PodRef) -> Workload:
        placed = self.pods.get(pod)
        if placed is None:
            raise WorkloadUnknownError(f"there is no pod {pod}")
        ec_name, node = placed
        return Workload(
            pod=pod,
            node_name=node,
            enclave_container=await self.enclave_container(pod.namespace, ec_name),
        )

    async def enclave_container(self, namespace: str, name: str) -> EnclaveContainerView:
        view = self.enclave_containers.get((namespace, name))
        if view is None:
            raise WorkloadUnknownError(f"there is no EnclaveContainer {namespace}/{name}")
        return view

    async def secret_value(self, namespace: str, ref: SecretKeyRef) -> bytes:
        value = self.secrets.get((namespace, ref.name), {}).get(ref.key)
        if value is None:
            raise ResourceNotFoundError(f"the Secret {namespace}/{ref.name} has no key {ref.key}")
        return value

    async def attested(
        self, workload: Workload, verified: VerifiedQuote, valid_until: datetime
    ) -> None:
        self.outcomes.append(Outcome(workload.pod, "Attested", f"until {valid_until.isoformat()}"))

    async def refused(self, workload: Workload, error: AttestationError) -> None:
        self.outcomes.append(Outcome(workload.pod, error.reason, error.message))
