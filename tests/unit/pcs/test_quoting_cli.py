"""``kubetee quoting-service provision`` / ``register`` / ``serve`` as a node runs them."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from enclave_runtime.sgx.authority import SimulatedAuthority
from kubetee.cli import main
from kubetee.pcs.registry import InMemoryRegistry
from kubetee.pcs.server import Registrar, create_app
from kubetee.pcs.stores import SimulatedStore

from .test_registration import NODE_TOKEN, _Authenticator


@pytest.fixture
def pcs_url(authority: SimulatedAuthority) -> Iterator[tuple[str, InMemoryRegistry]]:
    """The PCS app on loopback in a thread of its own (the CLI under test blocks)."""
    registry = InMemoryRegistry()
    app = create_app(SimulatedStore(authority), Registrar(authority, _Authenticator(), registry))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", registry
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def _register(platform: Path, url: str, token_file: Path) -> int:
    return main(
        [
            "quoting-service", "register", f"--platform-dir={platform}", f"--pcs-url={url}",
            f"--token-file={token_file}", "--wait-seconds=0",
        ]
    )  # fmt: skip


def test_a_node_provisions_registers_and_only_then_serves(
    tmp_path: Path,
    pcs_url: tuple[str, InMemoryRegistry],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, registry = pcs_url
    platform = tmp_path / "platform"
    provision = [
        "quoting-service", "provision", f"--platform-dir={platform}", "--node=node-b",
        "--fmspc=00606A000000", "--ca=platform",
    ]  # fmt: skip
    assert main(provision) == 0
    made = json.loads(capsys.readouterr().out)
    assert made == {
        "node": "node-b",
        "platform_dir": str(platform),
        "fmspc": "00606A000000",
        "ca": "platform",
        "registered": False,
    }
    serve = ["quoting-service", "serve", f"--platform-dir={platform}", f"--socket={tmp_path}/q"]
    assert main(serve) == 2
    assert "no registered platform" in capsys.readouterr().err

    token = tmp_path / "token"
    assert _register(platform, url, token) == 1  # no token yet, and no time to wait
    assert "cannot read" in capsys.readouterr().err
    token.write_text("someone-elses-token\n")
    assert _register(platform, url, token) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert registry.records == {}
    assert not (platform / "pck_chain.pem").exists()

    token.write_text(NODE_TOKEN + "\n")
    assert _register(platform, url, token) == 0
    assert "FMSPC 00606A000000 (platform CA)" in capsys.readouterr().out
    assert (platform / "pck_chain.pem").exists()
    assert registry.records["node-b"].ca == "platform"
    assert _register(platform, url, token) == 0
    assert "already registered" in capsys.readouterr().out
    # Provisioning again keeps the platform: the node stays who it is.
    assert main(provision) == 0
    assert json.loads(capsys.readouterr().out)["registered"] is True


def test_an_unreachable_pcs_is_retried_until_the_deadline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    platform = tmp_path / "platform"
    assert main(["quoting-service", "provision", f"--platform-dir={platform}", "--node=n"]) == 0
    token = tmp_path / "token"
    token.write_text("t")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    command = [
        "quoting-service", "register", f"--platform-dir={platform}",
        f"--pcs-url=http://127.0.0.1:{closed}", f"--token-file={token}", "--wait-seconds=1",
    ]  # fmt: skip
    assert main(command) == 1
    err = capsys.readouterr().err
    assert "attempt 1: cannot reach the PCS" in err
    final = err.rstrip().splitlines()[-1]
    assert final.startswith(
        f"kubetee quoting-service: error: cannot reach the PCS at http://127.0.0.1:{closed}"
    )
    assert not (platform / "pck_chain.pem").exists()
