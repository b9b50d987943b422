"""The runtime's life against the real protocol stack: start, re-attest, fail, stop."""

from __future__ import annotations

import asyncio
import logging
import stat

import pytest

from enclave_runtime.runtime.attestation import AttestationOutcome
from enclave_runtime.runtime.delivery import ENV_FILE
from enclave_runtime.runtime.probe import probe
from enclave_runtime.runtime.supervisor import Supervisor

from .conftest import API_KEY_VALUE, SECRET_VALUE, Stack, identity


async def _until(predicate: object, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


def _supervisor(stack: Stack, node: str = "node-a", **config: object) -> Supervisor:
    pod = stack.add_pod("payments-1", node)
    settings = stack.runtime_settings(pod, node, **config)
    return Supervisor(settings, identity(settings), stack.quoting(node), stack.client_context())


async def test_runtime_delivers_marks_started_reattests_and_cleans_up(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    supervisor = _supervisor(stack)
    secrets_dir = supervisor.settings.delivery_dir
    running = asyncio.create_task(supervisor.run())

    await _until(lambda: probe(secrets_dir)[0])
    assert (secrets_dir / "db").read_bytes() == SECRET_VALUE
    assert stat.S_IMODE((secrets_dir / "db").stat().st_mode) == 0o400
    assert API_KEY_VALUE.decode() in (secrets_dir / ENV_FILE).read_text()

    supervisor.request_reattestation()
    await _until(lambda: supervisor.rounds == 2)
    supervisor.request_stop()

    assert await running == 0
    assert not probe(secrets_dir)[0]
    assert not (secrets_dir / "db").exists()
    assert SECRET_VALUE.decode(errors="replace") not in caplog.text
    assert API_KEY_VALUE.decode() not in caplog.text
    assert "delivered 2 secret(s): api, db" in caplog.text


async def test_refused_runtime_exits_3_with_the_reason_and_delivers_nothing(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack.set_policy(allowDebug=False)
    supervisor = _supervisor(stack, debug=True)

    code = await supervisor.run()

    assert code == 3
    assert "DebugEnclaveRejected" in caplog.text
    assert not probe(supervisor.settings.delivery_dir)[0]
    assert not (supervisor.settings.delivery_dir / "db").exists()


async def test_reattestation_under_a_stricter_policy_withdraws_the_secrets(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = _supervisor(stack)
    secrets_dir = supervisor.settings.delivery_dir
    running = asyncio.create_task(supervisor.run())
    await _until(lambda: probe(secrets_dir)[0])

    stack.set_policy(minIsvSvn=4)
    supervisor.request_reattestation()

    assert await asyncio.wait_for(running, 10) == 3
    assert "IsvSvnTooLow" in caplog.text
    assert not probe(secrets_dir)[0]
    assert not (secrets_dir / "db").exists()
    assert not (secrets_dir / ENV_FILE).exists()


async def test_unreachable_quoting_service_ends_with_exit_4(stack: Stack) -> None:
    supervisor = _supervisor(stack)
    supervisor.quoting.socket_path = stack.workdir / "absent.sock"
    supervisor.settings.attest_timeout_seconds = 1.5

    assert await supervisor.run() == 4


async def test_annotation_request_triggers_reattestation(stack: Stack) -> None:
    supervisor = _supervisor(stack)
    podinfo = stack.workdir / "podinfo"
    podinfo.mkdir()
    (podinfo / "annotations").write_text('kubetee.io/reattest-requested="p1"\n')
    supervisor.settings.podinfo_dir = podinfo
    running = asyncio.create_task(supervisor.run())
    await _until(lambda: supervisor.rounds == 1)

    (podinfo / "annotations").write_text('kubetee.io/reattest-requested="p2"\n')

    await _until(lambda: supervisor.rounds == 2)
    supervisor.request_stop()
    assert await running == 0


def _closed_port_url() -> str:
    import socket  # noqa: PLC0415

    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    return f"https://127.0.0.1:{port}"  # nothing listens there any more


async def test_a_dead_replica_is_skipped_for_one_that_answers(stack: Stack) -> None:
    dead = _closed_port_url()
    supervisor = _supervisor(stack)
    supervisor.settings.attestation_url = f"{dead}, {stack.base_url}"
    supervisor._preferred = dead
    running = asyncio.create_task(supervisor.run())

    await _until(lambda: supervisor.rounds == 1)
    assert supervisor._preferred == stack.base_url  # the next round goes there first
    supervisor.request_stop()
    assert await running == 0


async def test_reattestation_without_any_service_is_retried_soon_and_keeps_the_secrets(
    stack: Stack,
) -> None:
    supervisor = _supervisor(stack)
    supervisor.settings.reattest_interval_seconds = 3600  # only the retry can bring round 2
    supervisor.settings.unavailable_retry_seconds = 0.2
    secrets_dir = supervisor.settings.delivery_dir
    running = asyncio.create_task(supervisor.run())
    await _until(lambda: supervisor.rounds == 1)

    url = stack.base_url
    supervisor.settings.attestation_url = _closed_port_url()
    supervisor._preferred = supervisor.settings.attestation_url
    supervisor.request_reattestation()
    await _until(lambda: "AttestationUnavailable" in probe(secrets_dir)[1])
    passed, message = probe(secrets_dir)
    assert passed  # still attested: an outage is not a refusal
    assert "re-attestation failing" in message
    assert (secrets_dir / "db").read_bytes() == SECRET_VALUE

    supervisor.settings.attestation_url = url  # the service is back
    await _until(lambda: supervisor.rounds == 2, within=5)
    assert "failing" not in probe(secrets_dir)[1]
    supervisor.request_stop()
    assert await running == 0


async def test_the_next_round_is_due_an_interval_after_the_last_began_not_ended(
    stack: Stack,
) -> None:
    """A round held up after the service attested it (a runtime stopped mid-round) is
    followed at once by the next, which was due while it hung: counting the interval
    from the round's end would eat into the attestation's validity."""
    supervisor = _supervisor(stack)
    supervisor.settings.reattest_interval_seconds = 1.0
    attest = supervisor._attest_at_any_replica
    began: list[float] = []
    ended: list[float] = []
    loop = asyncio.get_running_loop()

    async def recorded() -> AttestationOutcome:
        began.append(loop.time())
        outcome = await attest()
        if len(began) == 2:
            await asyncio.sleep(2.0)  # held up for two intervals after being attested
        ended.append(loop.time())
        return outcome

    supervisor._attest_at_any_replica = recorded  # type: ignore[method-assign]
    running = asyncio.create_task(supervisor.run())
    await _until(lambda: supervisor.rounds == 3, within=15)
    supervisor.request_stop()
    assert await running == 0

    # An untroubled round: the next comes an interval on (less the moment between the
    # supervisor's clock reading and this one's).
    assert began[1] - began[0] >= 0.9
    assert began[2] - ended[1] < 0.5  # the held-up round: the next was already due


async def test_the_probe_names_a_quoting_service_that_is_down(stack: Stack) -> None:
    supervisor = _supervisor(stack)
    supervisor.quoting.socket_path = stack.workdir / "absent.sock"
    supervisor.settings.attest_timeout_seconds = 1.5

    assert await supervisor.run() == 4
    passed, message = probe(supervisor.settings.delivery_dir)
    assert not passed
    assert "not attested yet: QuotingUnavailable" in message
