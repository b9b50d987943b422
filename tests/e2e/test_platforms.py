"""Keys where they belong, on the real local cluster: the simulated PCS alone holds the SGX
CA and signing keys, nodes register their own platform with a token the apiserver
checks, collateral travels over the PCCS v4 API, and a quote attests a pod only on the
node whose platform made it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from enclave_runtime.kbs_protocol import KbsRefusedError
from enclave_runtime.quoting.provision import provision_keys
from enclave_runtime.quoting.registration import PCS_AUDIENCE, RegistrationError, register
from enclave_runtime.sgx.authority import SimulatedAuthority
from kubetee.attestation_service.names import EC_LABEL
from kubetee.cluster import pcs
from kubetee.cluster.node_services import platform_dir
from kubetee.cluster.processes import ManagedProcess
from kubetee.metrics import names
from kubetee.pcs.registry import ConfigMapRegistry
from tests.e2e.attestation_support import (
    AttestationService,
    attestation_service,
    expected_identity,
    node_quoting_socket,
)
from tests.e2e.conftest import E2ECluster
from tests.e2e.operator_support import SIMULATION_MRSIGNER, install_crds
from tests.e2e.test_attestation import ENCLAVE, Session

pytestmark = pytest.mark.e2e
__all__ = ["attestation_service"]

NODES = ("sgx-node-1", "sgx-node-2")


def _registry(cluster: E2ECluster) -> ConfigMapRegistry:
    return ConfigMapRegistry(cluster.api, *pcs.REGISTRY.split("/"))


def _private_keys(authority: SimulatedAuthority) -> list[bytes]:
    """The DER of each CA and signing key's public half, to recognise the private keys."""
    return [
        cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for cert in authority.certificates.values()
    ]


def _public_of(path: Path) -> bytes | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError):
        return None
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _argument_files(pid: int) -> list[Path]:
    """Every existing file or directory a process names on its command line."""
    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    found = []
    for argument in arguments:
        value = argument.decode().split("=", 1)[-1]
        if value.startswith("/") and Path(value).exists():
            path = Path(value)
            found += sorted(path.rglob("*")) if path.is_dir() else [path]
    return [p for p in found if p.is_file()]


def test_only_the_pcs_holds_ca_or_signing_keys(
    cluster: E2ECluster, attestation_service: AttestationService
) -> None:
    layout = cluster.local_layout()
    authority = SimulatedAuthority.load(pcs.pcs_dir(layout))
    authority_keys = _private_keys(authority)
    names_of = {key: name for name, key in zip(authority.certificates, authority_keys, strict=True)}
    node_processes = [
        ManagedProcess(name, layout.run_dir, layout.log_dir)
        for name in (p.stem for p in layout.run_dir.glob("node-*.pid"))
    ]
    checked = 0
    for process in node_processes:
        pid = process.pid()
        assert pid is not None, f"{process.name} is not running"
        for path in _argument_files(pid):
            assert pcs.pcs_dir(layout) not in path.parents, f"{process.name} reads {path}"
            public = _public_of(path)
            assert public not in names_of, f"{process.name} holds {names_of.get(public)}"
            checked += 1
    for node in NODES:
        files = sorted(p.name for p in platform_dir(layout, node).iterdir())
        assert [f for f in files if "key" in f] == ["attestation.key.pem", "pck.key.pem"]
        for key_file in ("attestation.key.pem", "pck.key.pem"):
            assert _public_of(platform_dir(layout, node) / key_file) not in names_of
    # The attestation service's replicas: the root certificate, no key of the authority.
    running = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    service_pids = [
        pid
        for pid in running
        if "attestation-service" in _cmdline(pid)
        and f"--namespace={attestation_service.namespace}" in _cmdline(pid)
    ]
    assert len(service_pids) == 2
    for pid in service_pids:
        arguments = _cmdline(pid)
        assert "--authority-dir" not in arguments
        assert f"--root-ca={pcs.root_ca(layout)}" in arguments
        for path in _argument_files(pid):
            assert pcs.pcs_dir(layout) not in path.parents or path == pcs.root_ca(layout)
            assert _public_of(path) not in names_of
            checked += 1
    assert checked > 0
    # The PCS itself does hold them: the check above would see them if they were there.
    pcs_pid = ManagedProcess(pcs.PROCESS, layout.run_dir, layout.log_dir).pid()
    assert pcs_pid is not None
    assert {_public_of(p) for p in _argument_files(pcs_pid)} >= set(authority_keys)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _token(
    cluster: E2ECluster, account: str, *, node: str = "", audience: str = PCS_AUDIENCE
) -> str:
    spec: dict[str, Any] = {"expirationSeconds": 600, "audiences": [audience]}
    if node:
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Node", "name": node}
    answer = client.CoreV1Api(cluster.api).create_namespaced_service_account_token(
        account, pcs.NAMESPACE, {"spec": spec}
    )
    return str(answer.status.token)


@pytest.fixture
def extra_node(cluster: E2ECluster) -> Iterator[str]:
    """A Node object that no platform was registered for yet."""
    name = f"pcs-e2e-{os.getpid()}"
    core = client.CoreV1Api(cluster.api)
    core.create_node({"metadata": {"name": name, "labels": {"kubetee.io/e2e": "true"}}})
    try:
        yield name
    finally:
        try:
            core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_registration_needs_a_node_bound_node_token(cluster: E2ECluster, extra_node: str) -> None:
    layout = cluster.local_layout()
    ca = pcs.tls_files(layout).ca
    directory = Path(tempfile.mkdtemp(prefix="pcs-e2e-"))
    keys = provision_keys(directory, extra_node)
    registry = _registry(cluster)

    def refusal(token: str) -> str:
        with pytest.raises(RegistrationError) as refused:
            register(directory, pcs.url(layout), token, ca_file=ca)
        assert not refused.value.retryable
        return refused.value.code

    assert refusal("") == "UNAUTHENTICATED"
    assert refusal("not-a-token") == "UNAUTHENTICATED"
    assert refusal(_token(cluster, pcs.NODE_ACCOUNT)) == "TOKEN_NOT_BOUND"  # unbound
    assert refusal(_token(cluster, "default", node=extra_node)) == "NOT_A_NODE"
    assert refusal(_token(cluster, pcs.PCS_ACCOUNT, node=extra_node)) == "NOT_A_NODE"
    assert refusal(_token(cluster, pcs.NODE_ACCOUNT, node=extra_node, audience="api")) == (
        "UNAUTHENTICATED"
    )
    assert asyncio.run(registry.platform_of(extra_node, fresh=True)) is None

    platform = register(
        directory, pcs.url(layout), _token(cluster, pcs.NODE_ACCOUNT, node=extra_node), ca_file=ca
    )
    record = asyncio.run(registry.platform_of(extra_node, fresh=True))
    assert record is not None
    assert record.matches(platform.pck_certificate) is None
    assert record.ppid == keys.identity.ppid.hex()
    assert record.registered_by == f"system:serviceaccount:{pcs.NAMESPACE}:{pcs.NODE_ACCOUNT}"


def _bare_replica(core: client.CoreV1Api, namespace: str, name: str, node: str) -> Any:
    """A pod of the EnclaveContainer bound to ``node`` (KWOK runs nothing in it)."""
    return core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name, "labels": {EC_LABEL: "payments"}},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "app", "image": "busybox:1.36"}],
            },
        },
    )


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return str(response.read().decode())


def test_two_fmspcs_and_both_pck_cas_attest_and_quotes_stay_on_their_node(
    cluster: E2ECluster, attestation_service: AttestationService, namespace: str
) -> None:
    install_crds(cluster)
    spec = {
        "replicas": 0,
        "epc": "16Mi",
        "template": {"spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}},
        "enclave": ENCLAVE,
        "attestation": {"policy": {"mrsigner": [SIMULATION_MRSIGNER]}},
    }
    client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        "kubetee.io",
        "v1alpha1",
        namespace,
        "enclavecontainers",
        {
            "apiVersion": "kubetee.io/v1alpha1",
            "kind": "EnclaveContainer",
            "metadata": {"name": "payments"},
            "spec": spec,
        },
    )
    core = client.CoreV1Api(cluster.api)
    pods = {node: _bare_replica(core, namespace, f"on-{node}", node) for node in NODES}
    identity = expected_identity("payments", namespace, spec)
    registry = _registry(cluster)
    records = {node: asyncio.run(registry.platform_of(node, fresh=True)) for node in NODES}
    families = {(r.fmspc, r.ca) for r in records.values() if r is not None}
    assert families == {("00906ED50000", "processor"), ("00606A000000", "platform")}
    url = attestation_service.urls[0]

    async def attest(pod: Any, quoting_node: str) -> str:
        async with Session(url, attestation_service, pod) as session:
            data = session.runtime_data()
            quote = await session.quote(node_quoting_socket(cluster, quoting_node), identity, data)
            try:
                token = await session.kbs.attest(session.attestation(data, quote))
            except KbsRefusedError as refused:
                return refused.reason
            return "Attested" if token else "no token"

    outcomes = {node: asyncio.run(attest(pods[node], node)) for node in NODES}
    assert outcomes == dict.fromkeys(NODES, "Attested")
    # A genuine quote from node 1, for this very session, does not attest a pod on node 2.
    assert asyncio.run(attest(pods[NODES[1]], NODES[0])) == "PlatformMismatch"
    assert asyncio.run(attest(pods[NODES[0]], NODES[1])) == "PlatformMismatch"

    # The collateral came over the PCCS API: one TCB Info per FMSPC, a PCK CRL per CA.
    metrics = _scrape(attestation_service.metrics_url)
    for kind, ident in (
        ("tcb_info", "00906ED50000"),
        ("tcb_info", "00606A000000"),
        ("pck_crl", "processor"),
        ("pck_crl", "platform"),
    ):
        line = next(
            (
                ln
                for ln in metrics.splitlines()
                if ln.startswith(names.COLLATERAL_TIME_TO_NEXT_UPDATE_SECONDS)
                and f'kind="{kind}"' in ln
                and f'id="{ident}"' in ln
            ),
            None,
        )
        assert line is not None, f"no {kind} {ident} in the service's metrics"
        assert float(line.rsplit(" ", 1)[1]) > 0  # fresh: nextUpdate is ahead
    for node in NODES:  # the service marked each pod attested
        annotations = core.read_namespaced_pod(f"on-{node}", namespace).metadata.annotations
        assert "kubetee.io/attested-claims" in (annotations or {})
