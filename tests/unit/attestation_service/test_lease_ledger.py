"""The Lease nonce ledger: replays refused through the apiserver's 409, Leases owned by
the chart's ConfigMap (so ``helm uninstall`` takes them), and no unowned Lease when the
owner cannot be read.

The Kubernetes API is stood in for by objects answering the client's calls as the
apiserver does (AlreadyExists is 409, a missing object 404); the e2e suite runs the
ledger against a real apiserver.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from kubetee.attestation_service.errors import BackendUnavailableError, NonceReplayedError
from kubetee.attestation_service.readiness import ApiReadiness
from kubetee.attestation_service.replay import NONCE_LABEL, LeaseNonceLedger

NAMESPACE = "kubetee-system"
OWNER = "kt-kubetee-attestation-nonces"


class FakeCoordination:
    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        assert namespace == NAMESPACE
        if name in self.leases:
            raise ApiException(status=409, reason="Conflict")
        self.leases[name] = body


class FakeCore:
    def __init__(self, config_maps: dict[str, str]) -> None:
        self.config_maps = config_maps
        self.reads = 0

    def read_namespaced_config_map(self, name: str, namespace: str) -> SimpleNamespace:
        self.reads += 1
        if namespace != NAMESPACE or name not in self.config_maps:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(metadata=SimpleNamespace(uid=self.config_maps[name]))


async def test_leases_are_owned_by_the_charts_config_map_looked_up_once() -> None:
    leases, core = FakeCoordination(), FakeCore({OWNER: "uid-7"})
    ledger = LeaseNonceLedger(leases, NAMESPACE, "replica-1", core_api=core, owner=OWNER)
    expires = int(time.time()) + 60

    await ledger.record("nonce-a", expires, None)
    await ledger.record("nonce-b", expires, None)
    with pytest.raises(NonceReplayedError):
        await ledger.record("nonce-a", expires, None)

    assert len(leases.leases) == 2
    for lease in leases.leases.values():
        assert lease["metadata"]["labels"][NONCE_LABEL] == "true"
        assert lease["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": OWNER, "uid": "uid-7"}
        ]
    assert core.reads == 1


async def test_a_missing_owner_refuses_the_claim_and_records_nothing() -> None:
    leases = FakeCoordination()
    ledger = LeaseNonceLedger(leases, NAMESPACE, "replica-1", core_api=FakeCore({}), owner=OWNER)
    with pytest.raises(BackendUnavailableError, match=rf"{NAMESPACE}/{OWNER}.*404"):
        await ledger.record("nonce-a", int(time.time()) + 60, None)
    assert leases.leases == {}


async def test_without_an_owner_leases_are_unowned() -> None:
    leases = FakeCoordination()
    await LeaseNonceLedger(leases, NAMESPACE, "replica-1").record("n", int(time.time()) + 60, None)
    (lease,) = leases.leases.values()
    assert "ownerReferences" not in lease["metadata"]


def test_an_owner_without_the_core_api_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="core API"):
        LeaseNonceLedger(FakeCoordination(), NAMESPACE, "replica-1", owner=OWNER)


class ProbedCoordination(FakeCoordination):
    """Answers the readiness read as the apiserver does: 404 while it and etcd are up."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: Exception | None = None
        self.reads = 0

    def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> None:
        self.reads += 1
        if self.failure is not None:
            raise self.failure
        raise ApiException(status=404, reason="Not Found")


async def test_readiness_says_why_no_attestation_could_complete() -> None:
    leases = ProbedCoordination()
    readiness = ApiReadiness(leases, NAMESPACE)
    assert await readiness.problem() is None

    readiness.forget()  # past the moment the answer is kept
    leases.failure = ApiException(status=500, reason="etcdserver: request timed out")
    assert "500" in (await readiness.problem() or "")

    readiness.forget()
    leases.failure = urllib3.exceptions.MaxRetryError(None, "/apis", "refused")  # type: ignore[arg-type]
    assert "cannot be reached" in (await readiness.problem() or "")
    reads = leases.reads
    await readiness.problem()
    assert leases.reads == reads  # asked again at once: the kept answer, no API call
