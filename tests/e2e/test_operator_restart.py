"""The operator killed in the middle of reconciling loses nothing and duplicates nothing."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
import yaml

from tests.e2e.conftest import E2ECluster
from tests.e2e.operator_support import (
    Api,
    OperatorProcess,
    api,
    condition,
    enclave_container,
    free_nodes,
    operator,
    pools,
    wait_for,
)

pytestmark = pytest.mark.e2e

__all__ = ["api", "free_nodes", "operator", "pools"]

COUNT = 12


@pytest.mark.usefixtures("free_nodes")
def test_kill_and_restart_mid_reconcile(
    cluster: E2ECluster,
    api: Api,
    operator: OperatorProcess,
    namespace: str,
    pools: Callable[..., str],
) -> None:
    pool = pools("restart-e2e", "Spread")
    names = [f"r{i}" for i in range(COUNT)]
    manifests = [enclave_container(name, 1, epc="16Mi", pool=pool) for name in names]
    stream = "---\n".join(yaml.safe_dump(m) for m in manifests)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input_text=stream)
    # Kill it as soon as it has started writing, before it could have finished.
    wait_for(
        "a first Deployment",
        lambda: api.apps.list_namespaced_deployment(namespace).items,
        timeout=60,
        operator=operator,
    )
    operator.kill(signal.SIGKILL)
    done_before = len(api.apps.list_namespaced_deployment(namespace).items)
    operator.start()

    def all_scheduled() -> bool:
        return all(
            condition(api.ec(namespace, name), "Scheduled").get("status") == "True"
            for name in names
        )

    wait_for(
        f"all {COUNT} EnclaveContainers scheduled", all_scheduled, timeout=120, operator=operator
    )

    deployments = api.apps.list_namespaced_deployment(namespace).items
    assert sorted(d.metadata.name for d in deployments) == sorted(names)
    for deployment in deployments:
        owners = deployment.metadata.owner_references
        assert len(owners) == 1
        assert owners[0].kind == "EnclaveContainer"
        assert owners[0].name == deployment.metadata.name
    replica_sets = api.apps.list_namespaced_replica_set(namespace).items
    assert len(replica_sets) == COUNT, "a spec re-applied differently would roll a second one"
    for name in names:
        assert len(api.pods(namespace, name)) == 1, name
        status = api.ec(namespace, name)["status"]
        assert status["replicas"] == 1
        assert status["epc"]["allocated"] == "16Mi"
    assert done_before <= COUNT
