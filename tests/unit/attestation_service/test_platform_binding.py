"""A quote attests a pod only when it comes from the platform registered for the pod's node."""

from __future__ import annotations

import pytest

from enclave_runtime.kbs_protocol import KbsRefusedError
from enclave_runtime.runtime.attestation import attest_once

from .conftest import Stack, identity


async def _attest_with_socket_of(stack: Stack, pod_node: str, quoting_node: str) -> str:
    pod = stack.add_pod("payments-1", pod_node)
    settings = stack.runtime_settings(pod, quoting_node)
    with pytest.raises(KbsRefusedError) as refused:
        await attest_once(
            settings, identity(settings), stack.quoting(quoting_node), stack.client_context()
        )
    assert refused.value.step == "attest"
    assert refused.value.status == 401
    return refused.value.reason


async def test_a_genuine_quote_from_another_node_does_not_attest_the_pod(stack: Stack) -> None:
    # Everything else is right: the enclave, the nonce, the key, the policy.
    assert await _attest_with_socket_of(stack, "node-a", "node-b") == "PlatformMismatch"
    outcome = stack.cluster.outcomes[-1]
    assert outcome.reason == "PlatformMismatch"
    assert "node node-a" in outcome.message


async def test_a_pod_on_a_node_without_a_registered_platform_is_refused(stack: Stack) -> None:
    assert await _attest_with_socket_of(stack, "node-z", "node-a") == "PlatformNotRegistered"


async def test_the_same_quote_attests_the_pod_on_its_own_node(stack: Stack) -> None:
    pod = stack.add_pod("payments-1", "node-b")
    settings = stack.runtime_settings(pod, "node-b")
    outcome = await attest_once(
        settings, identity(settings), stack.quoting("node-b"), stack.client_context()
    )
    assert outcome.secrets
