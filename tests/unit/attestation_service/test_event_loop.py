"""The service and the runtime run on uvloop (its TLS transport is far cheaper than
asyncio's), and a whole exchange works on it: the production listener with its
connection limits, the runtime's kept connection, replay refusal."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path

import pytest
import uvloop

from enclave_runtime.runtime import commands
from enclave_runtime.runtime.attestation import attest_once, kbs_client
from kubetee.attestation_service import server
from kubetee.attestation_service.replay import MemoryNonceLedger
from kubetee.attestation_service.settings import ServiceSettings

from .conftest import API_KEY_VALUE, SECRET_VALUE, identity, running_stack
from .test_attestation_flow import Session, _post_attest
from .test_kept_connection import _serve


def test_a_service_process_serves_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve(*_: object, **__: object) -> None:
        loops.append(asyncio.get_running_loop())

    monkeypatch.setattr(server, "build_service", lambda _: (object(), MemoryNonceLedger()))
    monkeypatch.setattr(server, "create_app", lambda _: object())
    monkeypatch.setattr(server, "instrument_app", lambda _: None)
    monkeypatch.setattr(server, "_serve", serve)

    server._run_worker(ServiceSettings.model_construct(metrics_port=0), False, None)

    assert len(loops) == 1
    assert isinstance(loops[0], uvloop.Loop)


def test_the_runtime_runs_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    class Supervisor:
        def __init__(self, *_: object) -> None:
            pass

        async def run(self) -> int:
            loops.append(asyncio.get_running_loop())
            return 0

    settings = types.SimpleNamespace(
        enclave_config=None,
        enclave_files_dir=None,
        signer_key=None,
        pod_namespace="shop",
        pod_name="p-1",
        enclave_container="ec",
        quoting_socket="/nonexistent",
        secrets=[],
    )
    enclave = types.SimpleNamespace(
        mrenclave=bytes(32), mrsigner=bytes(32), isv_prod_id=1, isv_svn=1, debug=False
    )
    monkeypatch.setattr(commands, "load_settings", lambda: settings)
    monkeypatch.setattr(commands, "load_signer", lambda _: None)
    monkeypatch.setattr(commands, "identity_of", lambda *_: enclave)
    monkeypatch.setattr(commands, "tls_context", lambda _: None)
    monkeypatch.setattr(commands, "start_runtime_metrics", lambda *_: None)
    monkeypatch.setattr(commands, "Supervisor", Supervisor)

    assert commands.run(types.SimpleNamespace()) == 0
    assert len(loops) == 1
    assert isinstance(loops[0], uvloop.Loop)


def test_re_attestations_on_a_kept_connection_on_uvloop(sim_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        async with running_stack(sim_dir, tmp_path) as stack:
            async for served in _serve(stack, keepalive_timeout=30):
                pod = served.stack.add_pod("payments-1")
                settings = served.stack.runtime_settings(pod)
                context = served.stack.client_context()
                async with kbs_client(settings, context, served.stack.base_url) as kbs:
                    for _ in range(3):
                        outcome = await attest_once(
                            settings, identity(settings), served.stack.quoting(), context, kbs=kbs
                        )
                        assert outcome.secrets == {"db": SECRET_VALUE, "api": API_KEY_VALUE}
                assert served.connections == 1
                assert [o.reason for o in served.stack.cluster.outcomes] == ["Attested"] * 3

                # A used nonce is refused on uvloop as on asyncio.
                async with Session(served.stack, pod) as session:
                    cookie = session.cookie()
                    data = session.runtime_data()
                    attestation = session.attestation(data, await session.quote_for(data))
                    await session.kbs.attest(attestation)
                status, problem = await _post_attest(served.stack, cookie, attestation)
                assert (status, problem["reason"]) == (401, "NonceReplayed")

    uvloop.run(scenario())
