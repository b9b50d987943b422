"""A stock-shaped KBS client (kbs_protocol's JSON, hashing and JWE handling, no
KubeTEE code, no project-specific extra-params) attests and fetches its secrets; the
pod it attests is the one named in what the quote signs, and no other."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from kubetee.attestation_service.sessions import PodRef
from tests.stock_kbs_client import (
    StockClientError,
    StockKbsClient,
    config_id,
    initdata_toml,
)

from .conftest import API_KEY_VALUE, EC_NAME, NAMESPACE, SECRET_VALUE, Stack, identity


def _reason(refused: pytest.ExceptionInfo[StockClientError]) -> str:
    return str(json.loads(refused.value.body)["reason"])


def _client(
    stack: Stack,
    launched_for: PodRef,
    *,
    sends: PodRef | None = None,
    node: str = "node-a",
    **options: object,
) -> StockKbsClient:
    """A client in the enclave of ``launched_for`` (its CONFIGID), sending the init-data
    of ``sends`` (default: the same pod)."""
    launched = initdata_toml(launched_for.namespace, launched_for.name, launched_for.uid)
    named = sends or launched_for
    sent = initdata_toml(named.namespace, named.name, named.uid)
    settings = stack.runtime_settings(launched_for, node)

    async def attester(report_data: bytes) -> bytes:
        body = replace(identity(settings).report_body(report_data), config_id=config_id(launched))
        return await stack.quoting(node).quote(body)

    return StockKbsClient(
        stack.base_url,
        stack.client_context(),
        attester,
        initdata_toml=sent,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "extra_params",
    [None, "", {}],
    ids=["supported-hash-algorithms", "empty-string", "empty-object"],
)
async def test_stock_client_attests_and_fetches_every_secret(
    stack: Stack, extra_params: object
) -> None:
    pod = stack.add_pod("payments-1")
    client = _client(stack, pod, extra_params=extra_params)
    try:
        db = await client.get_resource(NAMESPACE, EC_NAME, "db")
        api = await client.get_resource(NAMESPACE, EC_NAME, "api")
    finally:
        await client.close()

    assert (db, api) == (SECRET_VALUE, API_KEY_VALUE)
    assert [(o.pod, o.reason) for o in stack.cluster.outcomes] == [(pod, "Attested")]
    assert client.token_exp == int(stack.clock.now) + 300
    auth = client.requests[0][2]
    assert auth["tee"] == "sgx"
    assert "kubetee.io/pod" not in str(auth)  # nothing project-specific at /auth


async def test_the_auth_cookie_stays_valid_for_resources_after_attest(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    client = _client(stack, pod, keep_auth_cookie=True)
    try:
        await client.rcar_handshake()
        handshakes = len([r for r in client.requests if r[1] == "attest"])
        assert await client.get_resource(NAMESPACE, EC_NAME, "db") == SECRET_VALUE
    finally:
        await client.close()
    # The /auth cookie was enough: no second handshake was needed.
    assert len([r for r in client.requests if r[1] == "attest"]) == handshakes == 1


async def test_auth_cookie_of_a_refused_attestation_fetches_nothing(stack: Stack) -> None:
    stack.set_policy(mrenclave=["ab" * 32])
    pod = stack.add_pod("payments-1")
    client = _client(stack, pod, keep_auth_cookie=True)
    try:
        with pytest.raises(StockClientError) as refused:
            await client.rcar_handshake()
        with pytest.raises(StockClientError) as no_resource:
            await client.get_resource(NAMESPACE, EC_NAME, "db")
    finally:
        await client.close()
    assert (refused.value.status, _reason(refused) == "MeasurementMismatch") == (
        401,
        True,
    )
    assert no_resource.value.status == 401


async def test_a_pod_not_named_in_the_signed_data_is_not_attested(stack: Stack) -> None:
    """Pod B's runtime presents its genuine quote (CONFIGID of B) with init-data naming
    pod A, to get A attested: refused, and nothing is written for A or B."""
    pod_a = stack.add_pod("payments-a")
    pod_b = stack.add_pod("payments-b", "node-b")
    client = _client(stack, pod_b, sends=pod_a, node="node-b")
    try:
        with pytest.raises(StockClientError) as refused:
            await client.rcar_handshake()
    finally:
        await client.close()

    assert refused.value.status == 401
    assert _reason(refused) == "InitDataMismatch"
    assert stack.cluster.outcomes == []


async def test_evidence_without_init_data_names_no_pod_and_is_refused(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    client = _client(stack, pod)
    client._initdata = None  # the stock client sends none when it has no initdata
    try:
        with pytest.raises(StockClientError) as refused:
            await client.rcar_handshake()
    finally:
        await client.close()
    assert refused.value.status == 401
    assert _reason(refused) == "PodNotNamed"
    assert stack.cluster.outcomes == []


async def test_init_data_naming_another_uid_is_not_that_pod(stack: Stack) -> None:
    """A replaced pod (same name, new UID) is not attested by its predecessor's evidence."""
    old = PodRef(NAMESPACE, "payments-1", "uid-old")
    stack.add_pod("payments-1")  # the current pod has uid-payments-1
    client = _client(stack, old)
    try:
        with pytest.raises(StockClientError) as refused:
            await client.rcar_handshake()
    finally:
        await client.close()
    assert _reason(refused) == "WorkloadUnknown"
    assert stack.cluster.outcomes == []


async def test_resources_of_another_namespace_or_workload_are_forbidden(stack: Stack) -> None:
    pod = stack.add_pod("payments-1")
    client = _client(stack, pod)
    try:
        await client.rcar_handshake()
        with pytest.raises(StockClientError) as other_namespace:
            await client.get_resource("other", EC_NAME, "db")
        with pytest.raises(StockClientError) as other_workload:
            await client.get_resource(NAMESPACE, "other-ec", "db")
    finally:
        await client.close()
    assert other_namespace.value.status == other_workload.value.status == 403
    assert "/PolicyDeny" in other_namespace.value.body
