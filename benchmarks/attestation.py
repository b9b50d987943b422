"""Full KBS attestations per second against the attestation service on loopback.

The service runs in its own process (TLS, real DCAP verification against the
simulated authority, policy, JWE), with an in-memory cluster so the apiserver is not
what is measured. Concurrent clients each run whole attestations as the enclave
runtime does: a new TLS connection, ``/auth``, a quote from the node's simulated
platform bound to the session, ``/attest``, ``/resource`` and unwrapping the JWE.

In the same run, two baselines: bare HTTPS round trips (new connection, one GET)
at the same concurrency against the same server, and the raw quote verification
rate of the cached verifier in one process. Prints one JSON line.

    .venv/bin/python benchmarks/attestation.py [--clients 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web

from enclave_runtime.kbs_protocol import (
    Attestation,
    CompositeEvidence,
    RuntimeData,
    SgxEvidence,
    TeeKeyPair,
    decrypt_response,
    report_data_for,
)
from enclave_runtime.kbs_protocol.client import KbsClient
from enclave_runtime.kbs_protocol.init_data import PodIdentity, config_id_for, pod_init_data
from enclave_runtime.quoting.provision import provision
from enclave_runtime.sgx.enclave import make_report_body
from enclave_runtime.sgx.platform import SimulatedPlatform
from kubetee.api.v1alpha1 import SecretKeyRef
from kubetee.attestation.policy import AttestationPolicy
from kubetee.attestation_service.app import KbsService, create_app
from kubetee.attestation_service.evidence import DcapEvidenceVerifier, RegisteredPlatforms
from kubetee.attestation_service.memory_backend import InMemoryCluster
from kubetee.attestation_service.replay import MemoryNonceLedger
from kubetee.attestation_service.sessions import PodRef, SessionSigner
from kubetee.attestation_service.tls import generate, server_context
from kubetee.attestation_service.workloads import EnclaveContainerView, policy_hash
from kubetee.pcs.registry import InMemoryRegistry, record_for

NAMESPACE, EC = "bench", "payments"
SECRET = b"benchmark-secret-value"
MRENCLAVE = bytes(range(32))
MRSIGNER = bytes(range(32, 64))


def _serve(workdir: Path, port: int, clients: int) -> None:
    """Child process: the service with an in-memory cluster of ``clients`` pods."""
    cluster = InMemoryCluster()
    policy = AttestationPolicy(mrenclave=[MRENCLAVE.hex()], min_isv_svn=1)
    cluster.enclave_containers[(NAMESPACE, EC)] = EnclaveContainerView(
        NAMESPACE,
        EC,
        "uid-ec",
        policy,
        policy_hash(policy),
        {"db": SecretKeyRef(name="db", key="pw")},
    )
    cluster.secrets[(NAMESPACE, "db")] = {"pw": SECRET}
    for index in range(clients):
        cluster.pods[PodRef(NAMESPACE, f"pod-{index}", f"uid-{index}")] = (EC, "node-a")
    service = KbsService(
        sessions=SessionSigner(b"k" * 32, nonce_ttl_seconds=60, token_ttl_seconds=300),
        ledger=MemoryNonceLedger(),
        verifier=DcapEvidenceVerifier.for_simulator(workdir / "authority"),
        platforms=_platforms(workdir),
        workloads=cluster,
        reporter=_NoOutcomes(cluster),
    )
    web.run_app(
        create_app(service),
        host="127.0.0.1",
        port=port,
        ssl_context=server_context(workdir / "tls" / "tls.crt", workdir / "tls" / "tls.key"),
        access_log=None,
        print=None,
    )


class _NoOutcomes:
    """Reporter that keeps nothing (a long run must not grow memory)."""

    def __init__(self, cluster: InMemoryCluster) -> None:
        del cluster

    async def attested(self, *_: object) -> None:
        return None

    async def refused(self, *_: object) -> None:
        return None


async def _attest_once(
    url: str, context: ssl.SSLContext, platform: SimulatedPlatform, index: int
) -> None:
    key = TeeKeyPair.generate()
    async with KbsClient(url, ssl_context=context) as kbs:
        init_data = pod_init_data(PodIdentity(NAMESPACE, f"pod-{index}", f"uid-{index}"))
        challenge = await kbs.auth()
        data = RuntimeData(nonce=challenge.nonce, tee_pubkey=key.public_jwk())
        body = replace(
            make_report_body(
                MRENCLAVE,
                MRSIGNER,
                debug=False,
                isv_prod_id=1,
                isv_svn=2,
                report_data=report_data_for(data),
            ),
            config_id=config_id_for(init_data),
        )
        quote = platform.quote(body)
        evidence = SgxEvidence(quote=base64.b64encode(quote).decode())
        await kbs.attest(
            Attestation(
                init_data=init_data,
                runtime_data=data,
                tee_evidence=CompositeEvidence(primary_evidence=evidence.to_wire()),
            )
        )
        released = await kbs.resource(NAMESPACE, EC, "db")
    if decrypt_response(released, key) != SECRET:
        raise RuntimeError("released secret does not match")


async def _tls_roundtrip(
    url: str, context: ssl.SSLContext, platform: SimulatedPlatform, index: int
) -> None:
    del platform, index
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz", ssl=context) as response:
        await response.read()


async def _load(  # noqa: PLR0917
    operation,
    url: str,
    context: ssl.SSLContext,
    platform: SimulatedPlatform,
    clients: int,
    seconds: float,
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(index: int) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await operation(url, context, platform, index)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return len(latencies) / (time.perf_counter() - start), latencies


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _platforms(workdir: Path) -> RegisteredPlatforms:
    """node-a's platform registered, as the PCS records it."""
    platforms = InMemoryRegistry()
    chain = SimulatedPlatform.load(workdir / "node-a").pck_chain
    platforms.records["node-a"] = record_for("node-a", chain[0], chain[1], "benchmark")
    return RegisteredPlatforms(platforms)


def _verification_rate(workdir: Path, platform: SimulatedPlatform, seconds: float) -> float:
    verifier = DcapEvidenceVerifier.for_simulator(workdir / "authority")
    quote = platform.quote(
        make_report_body(
            MRENCLAVE, MRSIGNER, debug=False, isv_prod_id=1, isv_svn=2, report_data=b""
        )
    )
    now = datetime.now(UTC)

    async def measure() -> float:
        await verifier.verify(quote, now)
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            await verifier.verify(quote, now)
            calls += 1
        return calls / (time.perf_counter() - start)

    return asyncio.run(measure())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        _serve(args.serve, args.port, args.clients)
        return

    workdir = Path(tempfile.mkdtemp(prefix="kbs-bench-"))
    try:
        platform = provision(workdir / "authority", workdir / "node-a", "node-a")
        tls = generate(workdir / "tls", ["127.0.0.1"])
        context = ssl.create_default_context(cafile=str(tls.ca))
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(workdir),
                "--port",
                str(port),
                "--clients",
                str(args.clients),
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        url = f"https://127.0.0.1:{port}"
        try:
            asyncio.run(_wait(url, context))
            asyncio.run(_load(_attest_once, url, context, platform, args.clients, 1.0))  # warm-up
            rate, latencies = asyncio.run(
                _load(_attest_once, url, context, platform, args.clients, args.seconds)
            )
            tls_rate, tls_latencies = asyncio.run(
                _load(_tls_roundtrip, url, context, platform, args.clients, args.seconds / 2)
            )
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
        verify_rate = _verification_rate(workdir, platform, 2.0)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "attestation",
                "clients": args.clients,
                "attestations": len(latencies),
                "attestations_per_second": round(rate, 1),
                "p50_ms": round(statistics.median(latencies) * 1000, 2),
                "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
                "baseline_tls_roundtrips_per_second": round(tls_rate, 1),
                "baseline_tls_p50_ms": round(statistics.median(tls_latencies) * 1000, 2),
                "baseline_quote_verifications_per_second": round(verify_rate, 1),
                "ratio_to_tls_roundtrips": round(rate / tls_rate, 3),
                "ratio_to_quote_verifications": round(rate / verify_rate, 3),
                "cpus": os.cpu_count(),
                "backend": "in-memory cluster (the apiserver is not measured)",
            }
        )
    )


async def _wait(url: str, context: ssl.SSLContext) -> None:
    for _ in range(200):
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz", ssl=context):
                return
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the attestation service did not start")


if __name__ == "__main__":
    main()
