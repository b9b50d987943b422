"""The KBS protocol end to end: runtime client, quoting service, attestation service.

Every refusal is checked for its reason (HTTP problem type, the runtime's error, the
recorded Event), and that no byte of a secret leaves the service when it refuses.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import replace

import aiohttp
import pytest

from enclave_runtime.kbs_protocol import (
    SESSION_COOKIE,
    Attestation,
    CompositeEvidence,
    KbsRefusedError,
    RuntimeData,
    SgxEvidence,
    TeeKeyPair,
    decrypt_response,
    report_data_for,
)
from enclave_runtime.kbs_protocol.client import KbsClient
from enclave_runtime.kbs_protocol.init_data import PodIdentity, config_id_for, pod_init_data
from enclave_runtime.runtime.attestation import attest_once
from kubetee.attestation_service.sessions import PodRef

from .conftest import API_KEY_VALUE, EC_NAME, NAMESPACE, SECRET_VALUE, Stack, identity


def _assert_no_secret(text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for value in (SECRET_VALUE, API_KEY_VALUE):
        assert value not in data
        assert base64.b64encode(value) not in data


async def test_attested_runtime_receives_its_secrets(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    settings = stack.runtime_settings(pod)

    outcome = await attest_once(
        settings, identity(settings), stack.quoting(), stack.client_context()
    )

    assert outcome.secrets == {"db": SECRET_VALUE, "api": API_KEY_VALUE}
    assert [(o.pod, o.reason) for o in stack.cluster.outcomes] == [(pod, "Attested")]
    assert "s3cr3t" not in repr(outcome)


async def _refusal(stack: Stack, pod: PodRef, node: str = "node-a", **config: object) -> str:
    settings = stack.runtime_settings(pod, node, **config)
    with pytest.raises(KbsRefusedError) as refused:
        await attest_once(settings, identity(settings), stack.quoting(node), stack.client_context())
    assert refused.value.step == "attest"
    assert refused.value.status == 401
    _assert_no_secret(str(refused.value))
    return refused.value.reason


@pytest.mark.parametrize(
    ("policy", "config", "node", "reason"),
    [
        ({"mrenclave": ["ab" * 32]}, {}, "node-a", "MeasurementMismatch"),
        ({}, {"debug": True}, "node-a", "DebugEnclaveRejected"),
        ({}, {}, "old", "TCBStatusNotAccepted"),
        ({"minIsvSvn": 4}, {}, "node-a", "IsvSvnTooLow"),
        ({"mrsigner": ["cd" * 32]}, {}, "node-a", "SignerMismatch"),
        ({"isvProdId": 8}, {}, "node-a", "ProductIdMismatch"),
    ],
)
async def test_policy_refusals_name_their_reason_and_release_nothing(  # noqa: PLR0917
    stack: Stack,
    caplog: pytest.LogCaptureFixture,
    policy: dict[str, object],
    config: dict[str, object],
    node: str,
    reason: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    stack.set_policy(**policy)
    pod = stack.add_pod("payments-1", node)

    assert await _refusal(stack, pod, node, **config) == reason

    assert [(o.pod, o.reason) for o in stack.cluster.outcomes] == [(pod, reason)]
    assert reason in caplog.text
    _assert_no_secret(caplog.text)
    for outcome in stack.cluster.outcomes:
        _assert_no_secret(outcome.message)


async def test_out_of_date_platform_passes_when_the_policy_accepts_it(stack: Stack) -> None:
    stack.set_policy(acceptedTcbStatuses=["UpToDate", "OutOfDate"])
    pod = stack.add_pod("payments-1", "old")
    settings = stack.runtime_settings(pod, "old")

    outcome = await attest_once(
        settings, identity(settings), stack.quoting("old"), stack.client_context()
    )

    assert outcome.secrets["db"] == SECRET_VALUE


async def test_pinned_measurement_of_the_runtime_is_accepted(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    settings = stack.runtime_settings(pod)
    stack.set_policy(mrenclave=[identity(settings).mrenclave.hex()], minIsvSvn=3)

    outcome = await attest_once(
        settings, identity(settings), stack.quoting(), stack.client_context()
    )

    assert set(outcome.secrets) == {"db", "api"}


class Session:
    """A hand-driven KBS session, to send evidence the runtime never would."""

    def __init__(self, stack: Stack, pod: PodRef) -> None:
        self.stack = stack
        self.pod = pod
        self.key = TeeKeyPair.generate()
        self.kbs = KbsClient(stack.base_url, ssl_context=stack.client_context())
        self.nonce = ""
        self.init_data = pod_init_data(PodIdentity(pod.namespace, pod.name, pod.uid))

    async def __aenter__(self) -> Session:
        self.nonce = (await self.kbs.auth()).nonce
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kbs.close()

    def cookie(self) -> str:
        """The session cookie the client holds now."""
        assert self.kbs.session_cookie is not None
        return self.kbs.session_cookie

    def runtime_data(self, nonce: str | None = None) -> RuntimeData:
        return RuntimeData(nonce=nonce or self.nonce, tee_pubkey=self.key.public_jwk())

    async def quote_for(
        self, runtime_data: RuntimeData, node: str = "node-a", *, pod: PodRef | None = None
    ) -> bytes:
        """A quote of this pod's enclave (or, with ``pod``, of another pod's) on ``node``."""
        named = pod or self.pod
        settings = self.stack.runtime_settings(named, node)
        init_data = pod_init_data(PodIdentity(named.namespace, named.name, named.uid))
        body = replace(
            identity(settings).report_body(report_data_for(runtime_data)),
            config_id=config_id_for(init_data),
        )
        return await self.stack.quoting(node).quote(body)

    def attestation(self, runtime_data: RuntimeData, quote: bytes) -> Attestation:
        evidence = SgxEvidence(quote=base64.b64encode(quote).decode())
        return Attestation(
            init_data=self.init_data,
            runtime_data=runtime_data,
            tee_evidence=CompositeEvidence(primary_evidence=evidence.to_wire()),
        )


async def _post_attest(stack: Stack, cookie: str, attestation: Attestation) -> tuple[int, dict]:
    """POST /attest with exactly this cookie, as a client that kept an old one would."""
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
        http.post(
            f"{stack.base_url}/kbs/v0/attest",
            json=attestation.to_wire(),
            headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
            ssl=stack.client_context(),
        ) as response,
    ):
        return response.status, await response.json()


async def test_replayed_nonce_is_refused(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    async with Session(stack, pod) as session:
        challenge_cookie = session.cookie()
        data = session.runtime_data()
        attestation = session.attestation(data, await session.quote_for(data))
        await session.kbs.attest(attestation)

    status, problem = await _post_attest(stack, challenge_cookie, attestation)

    assert (status, problem["reason"]) == (401, "NonceReplayed")
    assert problem["type"].endswith("/AttestationError")
    # A replay writes nothing: the one outcome is the original attestation's.
    assert [o.reason for o in stack.cluster.outcomes] == ["Attested"]


async def test_forged_session_cookie_is_refused(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    async with Session(stack, pod) as session:
        data = session.runtime_data()
        attestation = session.attestation(data, await session.quote_for(data))
        genuine = session.cookie()
    signed, _, _mac = genuine.rpartition(".")
    prefix, expires_at, nonce, replica = signed.split(".")
    another_mac = f"{signed}.{base64.urlsafe_b64encode(b'x' * 32).decode().rstrip('=')}"
    # A later expiry with the genuine MAC: the MAC covers the fields.
    extended = f"{prefix}.{int(expires_at) + 3600}.{nonce}.{replica}.{_mac}"

    for forged in (another_mac, extended):
        status, problem = await _post_attest(stack, forged, attestation)

        assert (status, problem["reason"]) == (401, "SessionInvalid")
        assert "not one this service issued" in problem["detail"]
    assert stack.cluster.outcomes == []


async def test_expired_nonce_is_refused(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    async with Session(stack, pod) as session:
        data = session.runtime_data()
        quote = await session.quote_for(data)
        stack.clock.now += 61
        with pytest.raises(KbsRefusedError) as refused:
            await session.kbs.attest(session.attestation(data, quote))
    assert refused.value.reason == "NonceExpired"
    assert stack.cluster.outcomes == []


async def test_runtime_data_with_another_nonce_is_refused(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    async with Session(stack, pod) as session:
        data = session.runtime_data(nonce=base64.b64encode(b"n" * 32).decode())
        with pytest.raises(KbsRefusedError) as refused:
            await session.kbs.attest(session.attestation(data, await session.quote_for(data)))
    assert refused.value.reason == "NonceMismatch"


async def test_quote_from_another_node_for_someone_elses_report_is_refused(stack: Stack) -> None:
    victim_pod = stack.add_pod("payments-1", "node-b")
    attacker_pod = stack.add_pod("payments-2", "node-a")
    async with Session(stack, victim_pod) as victim, Session(stack, attacker_pod) as attacker:
        victim_quote = await victim.quote_for(victim.runtime_data(), node="node-b")
        with pytest.raises(KbsRefusedError) as refused:
            await attacker.kbs.attest(attacker.attestation(attacker.runtime_data(), victim_quote))
    assert refused.value.reason == "ReportDataMismatch"
    assert stack.cluster.outcomes == []  # unverified evidence writes nothing


async def test_swapped_tee_key_after_quoting_is_refused(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    async with Session(stack, pod) as session:
        quote = await session.quote_for(session.runtime_data())
        thief = RuntimeData(nonce=session.nonce, tee_pubkey=TeeKeyPair.generate().public_jwk())
        with pytest.raises(KbsRefusedError) as refused:
            await session.kbs.attest(session.attestation(thief, quote))
    assert refused.value.reason == "ReportDataMismatch"


async def test_unknown_pod_is_refused(stack: Stack) -> None:
    ghost = PodRef("shop", "ghost", "uid-ghost")
    async with Session(stack, ghost) as session:
        data = session.runtime_data()
        with pytest.raises(KbsRefusedError) as refused:
            await session.kbs.attest(session.attestation(data, await session.quote_for(data)))
    assert refused.value.reason == "WorkloadUnknown"


async def test_resources_need_an_attested_session(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    async with Session(stack, pod) as session:
        with pytest.raises(KbsRefusedError) as refused:
            await session.kbs.resource(NAMESPACE, EC_NAME, "db")
    assert (refused.value.status, refused.value.reason) == (401, "SessionInvalid")


async def test_resources_of_the_attested_workload_only(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    async with Session(stack, pod) as session:
        data = session.runtime_data()
        await session.kbs.attest(session.attestation(data, await session.quote_for(data)))

        released = await session.kbs.resource(NAMESPACE, EC_NAME, "db")
        assert decrypt_response(released, session.key) == SECRET_VALUE
        _assert_no_secret(released.model_dump_json())

        with pytest.raises(KbsRefusedError) as other_ec:
            await session.kbs.resource(NAMESPACE, "other-ec", "db")
        with pytest.raises(KbsRefusedError) as missing:
            await session.kbs.resource(NAMESPACE, EC_NAME, "nope")
    assert (other_ec.value.status, other_ec.value.reason) == (403, "ResourceForbidden")
    assert (missing.value.status, missing.value.reason) == (404, "ResourceNotFound")


async def test_policy_change_invalidates_earlier_attestations(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    async with Session(stack, pod) as session:
        data = session.runtime_data()
        await session.kbs.attest(session.attestation(data, await session.quote_for(data)))
        stack.set_policy(minIsvSvn=1)
        with pytest.raises(KbsRefusedError) as refused:
            await session.kbs.resource(NAMESPACE, EC_NAME, "db")
    assert refused.value.reason == "PolicyChanged"


async def test_attestation_expires(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    async with Session(stack, pod) as session:
        data = session.runtime_data()
        await session.kbs.attest(session.attestation(data, await session.quote_for(data)))
        stack.clock.now += 301
        with pytest.raises(KbsRefusedError) as refused:
            await session.kbs.resource(NAMESPACE, EC_NAME, "db")
    assert refused.value.reason == "AttestationExpired"


async def test_readyz_fails_with_the_cause_while_healthz_stays_live(stack: Stack) -> None:
    problem: list[str | None] = [None]

    async def readiness() -> str | None:
        return problem[0]

    stack.service.readiness = readiness
    connector = aiohttp.TCPConnector(ssl=stack.client_context())
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"{stack.base_url}/readyz") as answer:
            assert answer.status == 200
        problem[0] = "the Kubernetes API cannot be reached: MaxRetryError"
        async with session.get(f"{stack.base_url}/readyz") as answer:
            assert answer.status == 503
            body = await answer.json()
            assert body["reason"] == "BackendUnavailable"
            assert "cannot be reached" in body["detail"]
        async with session.get(f"{stack.base_url}/healthz") as answer:
            assert answer.status == 200
