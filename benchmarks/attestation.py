"""Full KBS attestations per second against the attestation service on loopback, with
the in-memory cluster and with the real apiserver of a local cluster.

The service runs in ``--workers`` processes sharing the port (as ``kubetee
attestation-service serve --workers``: TLS, real DCAP verification against the
simulated authority, policy, JWE). Concurrent clients each run whole attestations as
the enclave runtime does: ``/auth``, a new TEE key and a quote from the node's simulated
platform bound to the session, ``/attest``, ``/resource`` and unwrapping the JWE. Each
client is one runtime re-attesting its own pod, so past the first round every
attestation is a steady re-attestation. Two ways to connect, both measured:

- ``kept`` (what the runtime does): each client keeps one HTTPS connection for the whole
  run and re-attests on it (the runtime keeps it while the service's keep-alive timeout
  allows);
- ``new_connection``: a new TLS connection per attestation (a runtime whose connection the
  service closed as idle between two rounds).

Backends: ``memory`` (no apiserver: the service alone), and ``apiserver``: a local
cluster (``kubetee cluster up``'s control plane, built binaries from
``~/.cache/kubetee``) with the EnclaveContainer, its Secret and one replica pod per
client; the service keeps them in memory by watches (as in production) and writes the
pods' attestation through the real API.
There it runs twice, on kept connections: with nonces bound to their replica (the
default) and with the previous Lease per nonce (``--replay-ledger=lease``), and reports
the writes the service sent per attestation (counted at its API client), all writes the
apiserver served per attestation and by resource (any client: the control plane's own
heartbeats and leader elections included), and the apiserver's CPU per attestation.

Baselines in the same run: bare HTTPS round trips at the same concurrency (``GET
/healthz`` on a new connection each, and on kept connections), and the cached quote
verification rate in one process; ratios to them. Each measured run also reports the
CPU time per attestation of the service (all workers) and of the clients (this
process): on a machine shared with other work, the figure its load changes least; and
the attestations one core of the service sustains (attestations per CPU second of the
service), the figure to size replicas by, since in a cluster the runtimes run on other
nodes; how often the workers waited for work per attestation (voluntary context
switches: near 0 when their CPU is the limit), the cores both sides kept busy and the
machine's cores idle or taken by the hypervisor meanwhile.
The memory an idle kept connection costs the service (``idle_connections``): the
workers' resident memory before and after ``--idle-connections`` clients each open one
and send one request, per connection (what ``--max-connections`` and the memory limit are
sized by).
And the floor with this transport (``floor``): CPU of three bare requests on a kept
connection, both sides, plus the cryptography an attestation cannot do without (its
primitives timed alone), against what both sides take now; the rates the cores allow
at each.
The service and the clients run on uvloop, as in production; ``--loop asyncio`` runs
both on asyncio's own event loop, to compare. And the same handlers behind a native
transport (``memory_native_transport``): Granian's Rust HTTP/1.1 and TLS (hyper,
rustls) in place of the service's uvloop server, with its ratio to it (above 1: the
native transport would be faster).
Prints one JSON line.

    .venv/bin/python benchmarks/attestation.py [--clients 8] [--seconds 10]
        [--workers N (default: CPUs)] [--backend memory|apiserver|both]
        [--loop uvloop|asyncio] [--idle-connections 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from kbs_bench import (
    LOOPS,
    MRENCLAVE,
    MRSIGNER,
    NAMESPACE,
    Apiserver,
    ServerSpec,
    Service,
    attest_on,
    attest_once,
    dump,
    run_on,
    wait_ready,
)
from kbs_native_transport import NativeTransportService, why_unavailable

from enclave_runtime.kbs_protocol.client import KbsClient
from enclave_runtime.quoting.provision import provision
from enclave_runtime.sgx.enclave import make_report_body
from enclave_runtime.sgx.platform import SimulatedPlatform
from kubetee.attestation_service.evidence import DcapEvidenceVerifier
from kubetee.attestation_service.sessions import PodRef
from kubetee.attestation_service.tls import generate

# One attestation (or round trip) of a client for ``pod``, on its kept client if it has one.
Operation = Callable[[KbsClient | None, PodRef], Awaitable[None]]
Connect = Callable[[], KbsClient]


def _say(message: str) -> None:
    print(f"[attestation benchmark] {message}", file=sys.stderr, flush=True)


async def _tls_roundtrip(
    url: str, context: ssl.SSLContext, _: KbsClient | None, __: PodRef
) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz", ssl=context) as response:
        await response.read()


async def _kept_roundtrip(kbs: KbsClient | None, _: PodRef) -> None:
    assert kbs is not None
    await kbs.connection.request("GET", "/healthz")  # its kept connection


async def _load(
    operation: Operation, pods: list[PodRef], *, seconds: float, connect: Connect | None = None
) -> tuple[float, list[float]]:
    """Every pod's client runs ``operation`` back to back for ``seconds``; with
    ``connect``, each keeps one client (one connection) for the whole run."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(pod: PodRef) -> None:
        kbs = connect() if connect is not None else None
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                await operation(kbs, pod)
                latencies.append(time.perf_counter() - start)
        finally:
            if kbs is not None:
                await kbs.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(pod) for pod in pods))
    return len(latencies) / (time.perf_counter() - start), latencies


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


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


def _cryptography_ms(seconds: float) -> dict[str, float]:
    """Milliseconds of CPU each side's cryptography takes per attestation, with the same
    primitives and library as the code, whatever the code around them. The service
    verifies the quote's ECDSA signature (the QE's is checked once per platform), decodes
    the TEE key, and wraps the resource to it (a new key and a key agreement); the runtime
    signs its quote, makes its TEE key, decodes the JWE's ephemeral key and agrees."""
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    signature = key.sign(b"report", ec.ECDSA(hashes.SHA256()))
    steps: dict[str, Callable[[], object]] = {
        "sign": lambda: key.sign(b"report", ec.ECDSA(hashes.SHA256())),
        "verify": lambda: key.public_key().verify(signature, b"report", ec.ECDSA(hashes.SHA256())),
        "decode": lambda: ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point),
        "generate": lambda: ec.generate_private_key(ec.SECP256R1()),
        "agree": lambda: key.exchange(ec.ECDH(), key.public_key()),
    }
    ms = {name: _cpu_ms_per_call(step, seconds / len(steps)) for name, step in steps.items()}
    return {
        "service": ms["verify"] + ms["decode"] + ms["generate"] + ms["agree"],
        "client": ms["sign"] + ms["generate"] + ms["decode"] + ms["agree"],
    }


def _cpu_ms_per_call(step: Callable[[], object], seconds: float) -> float:
    calls, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        step()
        calls += 1
    return 1000 * (time.process_time() - start) / calls


def _floor(
    measured: dict[str, Any], baseline: dict[str, Any], crypto: dict[str, float]
) -> dict[str, Any]:
    """What an attestation costs both sides at the least with this transport: three bare
    requests on the kept connection and the cryptography; against what it costs now."""
    bare = 3 * (
        baseline["kept_https_service_cpu_ms_per_request"]
        + baseline["kept_https_client_cpu_ms_per_request"]
    )
    floor = bare + crypto["service"] + crypto["client"]
    now = measured["service_cpu_ms_per_attestation"] + measured["client_cpu_ms_per_attestation"]
    cpus = len(os.sched_getaffinity(0))
    return {
        "three_bare_requests_cpu_ms": round(bare, 3),
        "cryptography_cpu_ms": {side: round(ms, 3) for side, ms in crypto.items()},
        "floor_cpu_ms_per_attestation": round(floor, 3),
        "both_sides_cpu_ms_per_attestation": round(now, 3),
        # The most this machine's cores could run if both sides took only the floor, and
        # if they took what they take now (every core busy, nothing else running).
        "attestations_per_second_at_floor": round(1000 * cpus / floor, 1),
        "attestations_per_second_cpu_allows": round(1000 * cpus / now, 1),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class _Measured:
    rate: float
    latencies: list[float]
    service_cpu_seconds: float  # all worker processes
    client_cpu_seconds: float  # the clients' process (this one)
    # The busiest worker's part of the service's CPU: the kernel hands each kept connection
    # to one worker (SO_REUSEPORT hashes it), so a few clients may load one more.
    busiest_worker_share: float
    service_waits: int  # the workers' voluntary context switches
    # The machine's cores idle and taken by the hypervisor meanwhile (/proc/stat).
    idle_cores: float
    stolen_cores: float


def _machine_ticks() -> tuple[float, list[int]]:
    """Now, and the machine's CPU time so far by /proc/stat's columns (clock ticks)."""
    columns = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return time.monotonic(), [int(c) for c in columns]


def _cores(before: tuple[float, list[int]], after: tuple[float, list[int]], column: int) -> float:
    """The cores one /proc/stat column (3: idle, 7: steal) took between two readings."""
    seconds = after[0] - before[0]
    ticks = after[1][column] - before[1][column]
    return round(ticks / os.sysconf("SC_CLK_TCK") / max(seconds, 1e-9), 2)


def _figures(measured: _Measured) -> dict[str, Any]:
    latencies = measured.latencies
    return {
        "attestations": len(latencies),
        "attestations_per_second": round(measured.rate, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        # CPU time per attestation: what the load of other work on the machine
        # changes least (rates and latencies depend on it).
        "service_cpu_ms_per_attestation": round(
            1000 * measured.service_cpu_seconds / len(latencies), 3
        ),
        "client_cpu_ms_per_attestation": round(
            1000 * measured.client_cpu_seconds / len(latencies), 3
        ),
        # What one core of the service sustains when the runtimes run elsewhere (as in a
        # cluster: here they share the cores): its sizing figure.
        "service_attestations_per_core_second": round(
            len(latencies) / max(measured.service_cpu_seconds, 1e-9), 1
        ),
        "busiest_worker_cpu_share": round(measured.busiest_worker_share, 2),
        # Near 0: the workers hardly ever waited for work (their cores were the limit).
        "service_waits_per_attestation": round(measured.service_waits / len(latencies), 3),
        # The cores the service and the clients kept busy together, of ``cpus``; the rest
        # idle or taken by the hypervisor (steal: the machine's other tenants).
        "cores_busy": round(
            (measured.service_cpu_seconds + measured.client_cpu_seconds)
            * measured.rate
            / len(latencies),
            2,
        ),
        "cores_idle": measured.idle_cores,
        "cores_stolen": measured.stolen_cores,
    }


class _Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.platform = provision(workdir / "authority", workdir / "node-a", "node-a")
        tls = generate(workdir / "tls", ["127.0.0.1"])
        self.context = ssl.create_default_context(cafile=str(tls.ca))

    def spec(self, **changes: Any) -> ServerSpec:
        values: dict[str, Any] = {
            "workdir": self.workdir,
            "port": _free_port(),
            "workers": self.args.workers,
            "pods": self.args.clients,
            "loop": self.args.loop,
        }
        return ServerSpec(**(values | changes))

    def pods(self) -> list[PodRef]:
        """One pod per client, as the in-memory cluster holds them."""
        return [PodRef(NAMESPACE, f"pod-{i}", f"uid-{i}") for i in range(self.args.clients)]

    def attest(
        self,
        service: Service | NativeTransportService,
        pods: list[PodRef],
        seconds: float,
        *,
        kept: bool,
    ) -> _Measured:
        """Attestations of every pod's runtime, on kept connections or a new one each."""
        url = f"https://127.0.0.1:{service.spec.port}"
        operation: Operation
        connect: Connect | None = None
        if kept:

            async def operation(kbs: KbsClient | None, pod: PodRef) -> None:
                assert kbs is not None
                await attest_on(kbs, self.platform, pod)

            connect = partial(KbsClient, url, ssl_context=self.context, keepalive_seconds=60)
        else:

            async def operation(_: KbsClient | None, pod: PodRef) -> None:
                await attest_once(url, self.context, self.platform, pod)

        # The clients run on --loop: uvloop, as the runtime does.
        run_on(self.args.loop, _load(operation, pods, seconds=1.0, connect=connect))  # warm-up
        workers_cpu, client_cpu = service.cpu_seconds_by_worker(), time.process_time()
        waits, machine = service.waits(), _machine_ticks()
        rate, latencies = run_on(
            self.args.loop, _load(operation, pods, seconds=seconds, connect=connect)
        )
        machine_after = _machine_ticks()
        after = service.cpu_seconds_by_worker()
        used = [now - then for now, then in zip(after, workers_cpu, strict=True)]
        return _Measured(
            rate,
            latencies,
            sum(used),
            time.process_time() - client_cpu,
            max(used) / max(sum(used), 1e-9),
            service.waits() - waits,
            _cores(machine, machine_after, 3),
            _cores(machine, machine_after, 7),
        )

    def memory(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        pods = self.pods()
        spec = self.spec()
        _say(f"in-memory backend: {spec.workers} worker(s), {len(pods)} clients")
        url = f"https://127.0.0.1:{spec.port}"
        with Service(spec) as service:
            asyncio.run(wait_ready(url, self.context))
            kept = self.attest(service, pods, self.args.seconds, kept=True)
            fresh = self.attest(service, pods, self.args.seconds, kept=False)
            tls_rate, tls_latencies = run_on(
                self.args.loop,
                _load(
                    partial(_tls_roundtrip, url, self.context), pods, seconds=self.args.seconds / 2
                ),
            )
            service_cpu, client_cpu = service.cpu_seconds(), time.process_time()
            https_rate, https_latencies = run_on(
                self.args.loop,
                _load(
                    _kept_roundtrip,
                    pods,
                    seconds=self.args.seconds / 2,
                    connect=partial(KbsClient, url, ssl_context=self.context),
                ),
            )
            https_service_cpu = service.cpu_seconds() - service_cpu
            https_client_cpu = time.process_time() - client_cpu
            idle = run_on(self.args.loop, self._idle_connections(service, url))
        baseline = {
            "tls_roundtrips_per_second": round(tls_rate, 1),
            "tls_p50_ms": round(statistics.median(tls_latencies) * 1000, 2),
            "kept_https_roundtrips_per_second": round(https_rate, 1),
            # What one bare request costs each side: an attestation makes three.
            "kept_https_service_cpu_ms_per_request": round(
                1000 * https_service_cpu / len(https_latencies), 3
            ),
            "kept_https_client_cpu_ms_per_request": round(
                1000 * https_client_cpu / len(https_latencies), 3
            ),
            "kept_https_p50_ms": round(statistics.median(https_latencies) * 1000, 2),
        }
        return _figures(kept), _figures(fresh), baseline, idle

    def native_transport(self) -> dict[str, Any]:
        """Attestations on kept connections with the same handlers behind Granian."""
        if (why_not := why_unavailable()) is not None:
            return {"skipped": why_not}
        pods = self.pods()
        spec = self.spec()
        _say(f"the same handlers behind Granian (Rust HTTP/1.1, rustls): {spec.workers} worker(s)")
        with NativeTransportService(spec) as service:
            asyncio.run(wait_ready(f"https://127.0.0.1:{spec.port}", self.context))
            return _figures(self.attest(service, pods, self.args.seconds, kept=True))

    async def _idle_connections(self, service: Service, url: str) -> dict[str, Any]:
        """The workers' resident memory per idle kept connection."""
        count = self.args.idle_connections
        _say(f"{count} idle kept connections")
        before = service.rss_kib()
        clients = [KbsClient(url, ssl_context=self.context) for _ in range(count)]
        try:
            for kbs in clients:
                await kbs.connection.request("GET", "/healthz")
            await asyncio.sleep(0.5)  # the last answers' buffers released
            held = service.rss_kib()
        finally:
            await asyncio.gather(*(kbs.close() for kbs in clients))
        return {
            "connections": count,
            "service_rss_kib_before": before,
            "service_rss_kib_holding_them": held,
            "service_kib_per_idle_connection": round((held - before) / max(count, 1), 1),
        }

    def apiserver(self) -> dict[str, Any]:
        _say("starting a local cluster's control plane (a minute or two)")
        results: dict[str, Any] = {}
        with Apiserver(self.workdir / "cluster") as apiserver:
            pods = apiserver.prepare(self.args.clients, _say)
            for ledger in ("replica", "lease"):
                spec = self.spec(
                    kubeconfig=apiserver.kubeconfig, ledger=ledger, node=apiserver.node()
                )
                _say(f"apiserver backend, nonces: {ledger}")
                with Service(spec) as service:
                    url = f"https://127.0.0.1:{spec.port}"
                    asyncio.run(wait_ready(url, self.context))
                    # Every pod attested once first: what follows are re-attestations.
                    self.attest(service, pods, 0.0, kept=True)
                    cpu, sent = apiserver.cpu_seconds(), service.writes()
                    served = apiserver.mutating_requests_by_resource()
                    measured = self.attest(service, pods, self.args.seconds, kept=True)
                    cpu = apiserver.cpu_seconds() - cpu
                    sent = service.writes() - sent
                    by_resource = _difference(apiserver.mutating_requests_by_resource(), served)
                total = len(measured.latencies)  # the measured re-attestations
                results[ledger] = _figures(measured) | {
                    # Counted at the service's own API client: its writes only.
                    "service_writes_per_attestation": round(sent / total, 3),
                    # Counted by the apiserver: any client's (heartbeats, leader elections).
                    "apiserver_writes_per_attestation": round(sum(by_resource.values()) / total, 3),
                    "apiserver_writes_by_resource": by_resource,
                    "apiserver_cpu_ms_per_attestation": round(1000 * cpu / total, 2),
                }
        return results


def _difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    changed = {name: count - before.get(name, 0) for name, count in after.items()}
    return {name: count for name, count in sorted(changed.items()) if count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--backend", choices=["memory", "apiserver", "both"], default="both")
    parser.add_argument(
        "--idle-connections",
        type=int,
        default=500,
        help="kept connections held at once to measure the service's memory per connection",
    )
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="uvloop",
        help="event loop of the service and the clients (uvloop: as in production)",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="kbs-bench-", dir="/tmp"))
    try:
        run = _Run(args, workdir)
        _say("baseline: cached quote verification in one process")
        verify_rate = _verification_rate(workdir, run.platform, 2.0)
        figures: dict[str, Any] = {
            "benchmark": "attestation",
            "clients": args.clients,
            "workers": args.workers,
            "loop": args.loop,
            "cpus": os.cpu_count(),
            "baseline_quote_verifications_per_second": round(verify_rate, 1),
        }
        if args.backend in {"memory", "both"}:
            kept, fresh, baseline, idle = run.memory()
            figures["memory"] = kept | {
                "ratio_to_quote_verifications": round(
                    kept["attestations_per_second"] / verify_rate, 3
                ),
                "ratio_to_kept_https_roundtrips": round(
                    kept["attestations_per_second"] / baseline["kept_https_roundtrips_per_second"],
                    3,
                ),
            }
            figures["memory_new_connection"] = fresh | {
                "ratio_to_quote_verifications": round(
                    fresh["attestations_per_second"] / verify_rate, 3
                ),
                "ratio_to_tls_roundtrips": round(
                    fresh["attestations_per_second"] / baseline["tls_roundtrips_per_second"], 3
                ),
            }
            native = run.native_transport()
            if "attestations_per_second" in native:
                native["ratio_to_uvloop_transport"] = round(
                    native["attestations_per_second"] / kept["attestations_per_second"], 3
                )
            figures["memory_native_transport"] = native
            figures["baseline"] = baseline
            figures["idle_connections"] = idle
            figures["floor"] = _floor(kept, baseline, _cryptography_ms(2.0))
        if args.backend in {"apiserver", "both"}:
            for ledger, result in run.apiserver().items():
                result["ratio_to_quote_verifications"] = round(
                    result["attestations_per_second"] / verify_rate, 3
                )
                figures[f"apiserver_{ledger}_nonces"] = result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(dump(figures))


if __name__ == "__main__":
    main()
