"""Attestation before secrets, on the real local cluster.

The operator puts the enclave runtime into every replica; the node agents run those
runtimes as local processes with the pods' environment (KWOK nodes run no containers);
each attests with a quote from its node's quoting service to the attestation service
(two replicas, each refusing nonces it did not issue), which releases the
EnclaveContainer's secret only to enclaves its policy accepts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kubernetes import client

from enclave_runtime.kbs_protocol import (
    SESSION_COOKIE,
    Attestation,
    CompositeEvidence,
    KbsRefusedError,
    RuntimeData,
    SgxEvidence,
    TeeKeyPair,
    report_data_for,
)
from enclave_runtime.kbs_protocol.client import KbsClient
from enclave_runtime.kbs_protocol.init_data import PodIdentity, config_id_for, pod_init_data
from enclave_runtime.quoting import QuotingClient
from enclave_runtime.quoting.provision import provision
from enclave_runtime.quoting.server import create_app as quoting_app
from enclave_runtime.runtime.delivery import ENV_FILE
from enclave_runtime.runtime.enclave import EnclaveIdentity
from enclave_runtime.sgx.platform import SimulatedPlatform
from kubetee.cluster import pcs
from kubetee.pcs.registry import ConfigMapRegistry, record_for
from kubetee.pcs.registry_writes import ConfigMapRegistryWriter
from tests.e2e.attestation_support import (
    NONCE_TTL_SECONDS,
    AttestationService,
    AttestingOperator,
    attestation_service,
    attesting_operator,
    expected_identity,
    node_quoting_socket,
    pod_dir,
)
from tests.e2e.conftest import E2ECluster
from tests.e2e.operator_support import (
    SIMULATION_MRSIGNER,
    Api,
    api,
    condition,
    free_nodes,
    wait_for,
)
from tests.stock_kbs_client import StockClientError, StockKbsClient, config_id, initdata_toml

pytestmark = pytest.mark.e2e
__all__ = ["api", "attestation_service", "attesting_operator", "free_nodes"]

SECRET = b"e2e-db-password-7Q2x\x01\xfe"
API_KEY = b"e2e-api-key-Zz81"
ATTESTED = "kubetee.io/attested"
ENCLAVE = {
    "files": [{"path": "app.py", "content": "print('payments')\n"}],
    "isvProdId": 7,
    "isvSvn": 3,
}


def _spec(policy: dict[str, Any] | None = None, replicas: int = 1, **enclave: Any) -> dict:
    return {
        "replicas": replicas,
        "epc": "16Mi",
        "template": {"spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}},
        "enclave": {**ENCLAVE, **enclave},
        # Every policy pins the enclave; the simulation signer admits any of these tests'.
        "attestation": {"policy": {"mrsigner": [SIMULATION_MRSIGNER], **(policy or {})}},
        "secrets": [
            {
                "name": "db",
                "secretKeyRef": {"name": "db", "key": "password"},
                "file": "db/pw",
            },
            {"name": "api", "secretKeyRef": {"name": "db", "key": "api"}, "env": "API_KEY"},
        ],
    }


def _apply_ec(api: Api, namespace: str, name: str, spec: dict[str, Any]) -> None:
    api.apply(
        {
            "apiVersion": "kubetee.io/v1alpha1",
            "kind": "EnclaveContainer",
            "metadata": {"name": name},
            "spec": spec,
        },
        namespace,
    )


def _create_secret(api: Api, namespace: str) -> None:
    api.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "db"},
            "data": {
                "password": base64.b64encode(SECRET).decode(),
                "api": base64.b64encode(API_KEY).decode(),
            },
        },
    )


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _attested(pod: client.V1Pod) -> bool:
    """Attested by the service (KWOK's pod stage marks every readiness gate True on its
    own; the service's condition has reason Attested and comes with its annotations)."""
    annotations = pod.metadata.annotations or {}
    return "kubetee.io/attested-claims" in annotations and any(
        c.type == ATTESTED and c.status == "True" and c.reason == "Attested"
        for c in (pod.status.conditions or [])
    )


def _attested_pods(api: Api, namespace: str, ec: str, count: int) -> Callable[[], list | None]:
    def probe() -> list[client.V1Pod] | None:
        pods = [p for p in api.pods(namespace, ec) if _attested(p)]
        return pods if len(pods) >= count else None

    return probe


def _wait_attested(
    api: Api, namespace: str, ec: str, count: int, *, operator: AttestingOperator, what: str
) -> list[client.V1Pod]:
    """Wait for ``count`` replicas attested by the service and return them."""
    pods: list[client.V1Pod] = wait_for(
        what, _attested_pods(api, namespace, ec, count), timeout=180, operator=operator
    )
    return pods


def _events(api: Api, namespace: str) -> list[client.CoreV1Event]:
    return list(api.core.list_namespaced_event(namespace).items)


def _event(api: Api, namespace: str, reason: str, about: str = "") -> Callable[[], Any]:
    def probe() -> client.CoreV1Event | None:
        for event in _events(api, namespace):
            if event.reason == reason and about in (event.message or ""):
                return event
        return None

    return probe


def _assert_no_secret(*texts: str | bytes) -> None:
    for text in texts:
        data = text.encode(errors="replace") if isinstance(text, str) else text
        for value in (SECRET, API_KEY):
            assert value not in data
            assert base64.b64encode(value) not in data
            assert value.decode(errors="replace") not in data.decode(errors="replace")


def _no_secret_left_the_service(
    api: Api, namespace: str, service: AttestationService, operator: AttestingOperator
) -> None:
    events = "\n".join(f"{e.reason}: {e.message}" for e in _events(api, namespace))
    ecs = api.custom.list_namespaced_custom_object(
        "kubetee.io", "v1alpha1", namespace, "enclavecontainers"
    )
    _assert_no_secret(events, json.dumps(ecs), service.log_text(), operator.log_tail(100000))


@pytest.fixture
def secret_namespace(api: Api, namespace: str) -> str:
    _create_secret(api, namespace)
    return namespace


@pytest.mark.usefixtures("free_nodes")
def test_attested_replicas_receive_the_secret(
    cluster: E2ECluster,
    api: Api,
    attesting_operator: AttestingOperator,
    attestation_service: AttestationService,
    secret_namespace: str,
) -> None:
    namespace = secret_namespace
    spec = _spec(replicas=2)
    identity = expected_identity("payments", namespace, spec)
    spec["attestation"]["policy"] = {
        "mrenclave": [identity.mrenclave.hex()],
        "mrsigner": [identity.mrsigner.hex()],
        "isvProdId": 7,
        "minIsvSvn": 3,
    }
    _apply_ec(api, namespace, "payments", spec)

    pods = _wait_attested(
        api, namespace, "payments", 2, operator=attesting_operator, what="2 attested replicas"
    )

    for pod in pods:
        assert ATTESTED in [g.condition_type for g in pod.spec.readiness_gates]
        secrets_dir = pod_dir(cluster, pod) / "root" / "run" / "kubetee" / "secrets"
        password = secrets_dir / "db" / "pw"
        # The service marks the pod during /attest; the runtime then fetches and writes.
        wait_for("the secret delivered", password.exists, timeout=30)
        assert password.read_bytes() == SECRET
        assert stat.S_IMODE(password.stat().st_mode) == 0o400
        assert f"export API_KEY={API_KEY.decode()}" in (secrets_dir / ENV_FILE).read_text()
        annotations = pod.metadata.annotations
        claims = json.loads(annotations["kubetee.io/attested-claims"])
        assert claims["mrenclave"] == identity.mrenclave.hex()
        assert claims["isvSvn"] == 3
        log = (pod_dir(cluster, pod) / "kubetee-runtime.log").read_text()
        assert "delivered 2 secret(s): api, db" in log
        _assert_no_secret(log)

    ec = wait_for(
        "status with 2 attested replicas",
        lambda: (
            (found := api.ec(namespace, "payments"))["status"].get("attestedReplicas") == 2
            and condition(found, "Attested").get("status") == "True"
            and found
        ),
        operator=attesting_operator,
    )
    assert condition(ec, "Attested")["reason"] == "ReplicasAttested"
    assert wait_for("an Attested Event", _event(api, namespace, "Attested", pods[0].metadata.name))
    _no_secret_left_the_service(api, namespace, attestation_service, attesting_operator)


def test_a_spec_change_rolls_to_attested_replicas(
    api: Api,
    attesting_operator: AttestingOperator,
    secret_namespace: str,
) -> None:
    """The Deployment rolls replica by replica as each new one is attested."""
    namespace = secret_namespace
    spec = _spec(replicas=2)
    _apply_ec(api, namespace, "roller", spec)
    before = {
        p.metadata.name
        for p in _wait_attested(
            api, namespace, "roller", 2, operator=attesting_operator, what="2 attested replicas"
        )
    }

    spec["template"]["spec"]["containers"][0]["env"] = [{"name": "V", "value": "2"}]
    _apply_ec(api, namespace, "roller", spec)

    def rolled() -> list[client.V1Pod] | None:
        pods = [p for p in api.pods(namespace, "roller") if _attested(p)]
        fresh = [p for p in pods if (p.spec.containers[0].env or [None])[0] is not None]
        done = len(fresh) == 2 and not before & {
            p.metadata.name for p in api.pods(namespace, "roller")
        }
        return fresh if done else None

    wait_for("2 attested replicas of the new template", rolled, timeout=240,
             operator=attesting_operator)  # fmt: skip


@pytest.mark.usefixtures("free_nodes")
def test_refused_enclaves_get_no_secret_and_say_why(
    cluster: E2ECluster,
    api: Api,
    attesting_operator: AttestingOperator,
    attestation_service: AttestationService,
    secret_namespace: str,
) -> None:
    namespace = secret_namespace
    cases = {
        "mismatch": (_spec({"mrenclave": ["ab" * 32]}), "MeasurementMismatch"),
        "debug": (_spec(debug=True), "DebugEnclaveRejected"),
        "tcb": (_spec({"acceptedTcbStatuses": ["SWHardeningNeeded"]}), "TCBStatusNotAccepted"),
    }
    for name, (spec, _) in cases.items():
        _apply_ec(api, namespace, name, spec)

    for name, (_, reason) in cases.items():
        event = wait_for(
            f"a {reason} Event for {name}",
            _event(api, namespace, reason),
            timeout=180,
            operator=attesting_operator,
        )
        assert event.involved_object.name == name
        assert event.type == "Warning"
        pods = api.pods(namespace, name)
        assert pods
        for pod in pods:
            assert not _attested(pod)
            local = pod_dir(cluster, pod)
            log = wait_for(
                f"{name}'s runtime to log its refusal",
                _log_naming(local / "kubetee-runtime.log", reason),
            )
            assert "attestation failed, the workload gets no secrets" in log
            assert not (local / "root" / "run" / "kubetee" / "secrets" / "db" / "pw").exists()
            _assert_no_secret(log)
        ec = wait_for(
            f"{name} with no attested replica",
            lambda name=name: (
                (found := api.ec(namespace, name))["status"].get("attestedReplicas") == 0
                and condition(found, "Attested").get("status") == "False"
                and found
            ),
            operator=attesting_operator,
        )
        assert condition(ec, "Attested")["reason"] == "AttestationPending"
    _no_secret_left_the_service(api, namespace, attestation_service, attesting_operator)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _log_naming(path: Path, reason: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        text = _read(path)
        return text if reason in text else None

    return probe


def _attested_svn(pod: client.V1Pod) -> int | None:
    if not _attested(pod):
        return None
    claims = json.loads((pod.metadata.annotations or {}).get("kubetee.io/attested-claims", "{}"))
    svn = claims.get("isvSvn")
    return svn if isinstance(svn, int) else None


class Session:
    """A hand-driven KBS session against one replica, to send what no runtime would."""

    def __init__(self, url: str, service: AttestationService, pod: client.V1Pod) -> None:
        self.kbs = KbsClient(url, ssl_context=service.context())
        self.pod = pod
        self.key = TeeKeyPair.generate()
        self.nonce = ""
        metadata = pod.metadata
        self.init_data = pod_init_data(PodIdentity(metadata.namespace, metadata.name, metadata.uid))

    async def __aenter__(self) -> Session:
        self.nonce = (await self.kbs.auth()).nonce
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kbs.close()

    def cookie(self) -> str:
        assert self.kbs.session_cookie is not None
        return self.kbs.session_cookie

    def runtime_data(self) -> RuntimeData:
        return RuntimeData(nonce=self.nonce, tee_pubkey=self.key.public_jwk())

    def attestation(self, data: RuntimeData, quote: bytes) -> Attestation:
        evidence = SgxEvidence(quote=base64.b64encode(quote).decode())
        return Attestation(
            init_data=self.init_data,
            runtime_data=data,
            tee_evidence=CompositeEvidence(primary_evidence=evidence.to_wire()),
        )

    async def quote(self, socket: Path, identity: EnclaveIdentity, data: RuntimeData) -> bytes:
        """A quote of this pod's enclave (CONFIGID of its init-data) from ``socket``."""
        body = replace(
            identity.report_body(report_data_for(data)), config_id=config_id_for(self.init_data)
        )
        return await QuotingClient(socket).quote(body)


async def _post_attest(
    url: str, service: AttestationService, cookie: str, attestation: Attestation
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
        http.post(
            f"{url}/kbs/v0/attest",
            json=attestation.to_wire(),
            headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
            ssl=service.context(),
        ) as response,
    ):
        return response.status, await response.json()


@pytest.fixture
def outdated_platform(cluster: E2ECluster) -> Iterator[tuple[Path, SimulatedPlatform]]:
    """A quoting service on a platform the cluster's authority rates OutOfDate."""
    directory = Path(tempfile.mkdtemp(prefix="old-", dir="/tmp"))
    platform = provision(
        pcs.pcs_dir(cluster.local_layout()),
        directory / "platform",
        "old-node",
        tcb_status="OutOfDate",
    )
    socket = directory / "q.sock"
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(quoting_app(platform, "old-node"))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.UnixSite(runner, str(socket)).start())
    import threading  # noqa: PLC0415

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield socket, platform
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.usefixtures("free_nodes")
def test_protocol_attacks_are_refused_across_replicas(  # noqa: PLR0917
    cluster: E2ECluster,
    api: Api,
    attesting_operator: AttestingOperator,
    attestation_service: AttestationService,
    secret_namespace: str,
    outdated_platform: tuple[Path, SimulatedPlatform],
) -> None:
    outdated_platform_socket, old = outdated_platform
    namespace = secret_namespace
    spec = _spec(replicas=1)
    _apply_ec(api, namespace, "payments", spec)
    (pod,) = _wait_attested(
        api, namespace, "payments", 1, operator=attesting_operator, what="an attested replica"
    )
    identity = expected_identity("payments", namespace, spec)
    own_node = node_quoting_socket(cluster, pod.spec.node_name)
    other_node = next(
        node_quoting_socket(cluster, n.metadata.name)
        for n in api.core.list_node().items
        if n.metadata.name != pod.spec.node_name
        and node_quoting_socket(cluster, n.metadata.name).exists()
    )
    replica_a, replica_b = attestation_service.urls
    responses: list[str] = []
    replays_to_a: list[tuple[str, bool]] = []  # (status and reason, refused as used there)

    async def attacks() -> dict[str, str]:
        reasons: dict[str, str] = {}
        # Replayed nonce: evidence accepted by replica A, sent again to replica B.
        async with Session(replica_a, attestation_service, pod) as session:
            challenge_cookie = session.cookie()
            data = session.runtime_data()
            attestation = session.attestation(data, await session.quote(own_node, identity, data))
            await session.kbs.attest(attestation)
        status, problem = await _post_attest(
            replica_b, attestation_service, challenge_cookie, attestation
        )
        responses.append(json.dumps(problem))
        reasons["replay"] = f"{status} {problem['reason']}"
        # And to replica A again, on new connections: the kernel spreads them over its two
        # workers, the one that issued the nonce (used there) and the other (not its own).
        for _ in range(16):
            status, problem = await _post_attest(
                replica_a, attestation_service, challenge_cookie, attestation
            )
            responses.append(json.dumps(problem))
            used_there = "already used" in problem["detail"]
            replays_to_a.append((f"{status} {problem['reason']}", used_there))

        # Expired nonce (sent with its cookie, which a browser-like jar would drop).
        async with Session(replica_b, attestation_service, pod) as session:
            cookie = session.cookie()
            data = session.runtime_data()
            quote = await session.quote(own_node, identity, data)
        await asyncio.sleep(NONCE_TTL_SECONDS + 1)
        status, problem = await _post_attest(
            replica_b, attestation_service, cookie, session.attestation(data, quote)
        )
        responses.append(json.dumps(problem))
        reasons["expired"] = f"{status} {problem['reason']}"

        # Another node's genuine quote for this very session: not the pod's node's platform.
        async with Session(replica_b, attestation_service, pod) as session:
            data = session.runtime_data()
            with pytest.raises(KbsRefusedError) as other_node_quote:
                await session.kbs.attest(
                    session.attestation(data, await session.quote(other_node, identity, data))
                )
        reasons["other node"] = f"{other_node_quote.value.status} {other_node_quote.value.reason}"

        # Another node's quote, made for someone else's session.
        async with (
            Session(replica_a, attestation_service, pod) as victim,
            Session(replica_b, attestation_service, pod) as attacker,
        ):
            stolen = await victim.quote(other_node, identity, victim.runtime_data())
            with pytest.raises(KbsRefusedError) as foreign:
                await attacker.kbs.attest(attacker.attestation(attacker.runtime_data(), stolen))
        reasons["foreign"] = f"{foreign.value.status} {foreign.value.reason}"

        # A platform whose TCB level the (default) policy does not accept, registered (by
        # the test, as the PCS would) for the pod's node for the time of the attempt.
        registry = ConfigMapRegistry(cluster.api, *pcs.REGISTRY.split("/"))
        writer = ConfigMapRegistryWriter(cluster.api, registry)
        genuine = await registry.platform_of(pod.spec.node_name, fresh=True)
        assert genuine is not None
        chain = old.pck_chain
        await writer.record(record_for(pod.spec.node_name, chain[0], chain[1], "e2e"))
        try:
            async with Session(replica_a, attestation_service, pod) as session:
                data = session.runtime_data()
                quote = await session.quote(outdated_platform_socket, identity, data)
                with pytest.raises(KbsRefusedError) as outdated:
                    await session.kbs.attest(session.attestation(data, quote))
                with pytest.raises(KbsRefusedError) as no_resource:
                    await session.kbs.resource(namespace, "payments", "db")
        finally:
            await writer.record(genuine)
        reasons["outdated"] = f"{outdated.value.status} {outdated.value.reason}"
        reasons["resource"] = f"{no_resource.value.status} {no_resource.value.reason}"
        for error in (other_node_quote, foreign, outdated, no_resource):
            responses.append(str(error.value))
        return reasons

    reasons = asyncio.run(attacks())

    assert reasons == {
        "replay": "401 NonceReplayed",
        "expired": "401 NonceExpired",
        "other node": "401 PlatformMismatch",
        "foreign": "401 ReportDataMismatch",
        "outdated": "401 TCBStatusNotAccepted",
        "resource": "401 SessionInvalid",
    }
    assert {outcome for outcome, _ in replays_to_a} == {"401 NonceReplayed"}
    # Both of replica A's workers answered (all 16 connections on one: p = 2^-15).
    assert {used_there for _, used_there in replays_to_a} == {True, False}
    leases = client.CoordinationV1Api(cluster.api).list_namespaced_lease(
        attestation_service.namespace, label_selector="kubetee.io/kbs-nonce=true"
    )
    # Nonces are bound to the replica that issued them: single use costs no apiserver write.
    assert leases.items == []
    for reason in ("PlatformMismatch", "TCBStatusNotAccepted"):
        assert wait_for(f"a {reason} Event", _event(api, namespace, reason))
    for reason in ("NonceReplayed", "NonceExpired", "ReportDataMismatch"):
        assert _event(api, namespace, reason)() is None
    assert _attested(_pod(api, pod))  # the attacks did not touch the genuine replica
    _assert_no_secret(*responses)
    _no_secret_left_the_service(api, namespace, attestation_service, attesting_operator)


def _stock_client(  # noqa: PLR0917  # one call site per role in the test
    service: AttestationService,
    url: str,
    socket: Path,
    identity: EnclaveIdentity,
    launched_for: client.V1Pod,
    sends: client.V1Pod | None = None,
    **options: Any,
) -> StockKbsClient:
    """A stock-shaped KBS client in the enclave launched for ``launched_for`` (CONFIGID of
    its init-data), sending the init-data of ``sends`` (default: the same pod)."""

    def toml(pod: client.V1Pod) -> str:
        return initdata_toml(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid)

    launched = toml(launched_for)

    async def attester(report_data: bytes) -> bytes:
        body = replace(identity.report_body(report_data), config_id=config_id(launched))
        return await QuotingClient(socket).quote(body)

    return StockKbsClient(
        url, service.context(), attester, initdata_toml=toml(sends or launched_for), **options
    )


@pytest.mark.usefixtures("free_nodes")
def test_stock_client_attests_fetches_and_attests_only_its_own_pod(
    cluster: E2ECluster,
    api: Api,
    attesting_operator: AttestingOperator,
    attestation_service: AttestationService,
    secret_namespace: str,
) -> None:
    namespace = secret_namespace
    spec = _spec(replicas=2)
    _apply_ec(api, namespace, "payments", spec)
    pod_a, pod_b = _wait_attested(
        api, namespace, "payments", 2, operator=attesting_operator, what="two attested replicas"
    )
    identity = expected_identity("payments", namespace, spec)
    socket_a = node_quoting_socket(cluster, pod_a.spec.node_name)
    replica_a, replica_b = attestation_service.urls

    async def scenario() -> tuple[bytes, bytes, StockClientError]:
        # kbs_protocol's shape, /auth on one replica, the /auth cookie kept for resources.
        stock = _stock_client(
            attestation_service, replica_a, socket_a, identity, pod_a, keep_auth_cookie=True
        )
        other = _stock_client(
            attestation_service, replica_b, socket_a, identity, pod_a, extra_params=""
        )
        # Pod A's enclave presenting its genuine quote as pod B's.
        thief = _stock_client(attestation_service, replica_b, socket_a, identity, pod_a, pod_b)
        try:
            db = await stock.get_resource(namespace, "payments", "db")
            api_key = await other.get_resource(namespace, "payments", "api")
            with pytest.raises(StockClientError) as stolen:
                await thief.rcar_handshake()
        finally:
            for each in (stock, other, thief):
                await each.close()
        return db, api_key, stolen.value

    db, api_key, refusal = asyncio.run(scenario())

    assert (db, api_key) == (SECRET, API_KEY)
    assert refusal.status == 401
    assert json.loads(refusal.body)["reason"] == "InitDataMismatch"
    assert _event(api, namespace, "InitDataMismatch")() is None  # refused before any write
    _no_secret_left_the_service(api, namespace, attestation_service, attesting_operator)


def _pod(api: Api, pod: client.V1Pod) -> client.V1Pod:
    return api.core.read_namespaced_pod(pod.metadata.name, pod.metadata.namespace)


@pytest.mark.usefixtures("free_nodes")
def test_raising_min_isv_svn_replaces_older_replicas(
    cluster: E2ECluster,
    api: Api,
    attesting_operator: AttestingOperator,
    attestation_service: AttestationService,
    secret_namespace: str,
) -> None:
    namespace = secret_namespace
    _apply_ec(api, namespace, "payments", _spec({"minIsvSvn": 3}))
    (old,) = _wait_attested(
        api,
        namespace,
        "payments",
        1,
        operator=attesting_operator,
        what="an attested replica at isvSvn 3",
    )

    # The CRD refuses a minimum above the spec's own SVN, so the fixed enclave ships with it.
    _apply_ec(api, namespace, "payments", _spec({"minIsvSvn": 4}, isvSvn=4))

    event = wait_for(
        "the old replica replaced for IsvSvnTooLow",
        _event(api, namespace, "IsvSvnTooLow", old.metadata.name),
        timeout=120,
        operator=attesting_operator,
    )
    assert "no longer passes the changed attestation policy" in event.message
    wait_for(
        "the old replica gone",
        lambda: (
            all(p.metadata.uid != old.metadata.uid for p in api.pods(namespace, "payments")) or None
        ),
        operator=attesting_operator,
    )
    (new,) = wait_for(
        "a replica attested at isvSvn 4",
        lambda: [p for p in api.pods(namespace, "payments") if _attested_svn(p) == 4],
        timeout=180,
        operator=attesting_operator,
    )  # fmt: skip
    assert new.metadata.uid != old.metadata.uid
    _no_secret_left_the_service(api, namespace, attestation_service, attesting_operator)
