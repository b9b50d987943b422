"""The apiserver's load while a fleet of attested replicas re-attests.

A local cluster's control plane (``kubetee cluster up``'s, no SGX node services) holds
an EnclaveContainer and ``--replicas`` (1,000) replica pods; the attestation service
(``--workers`` processes, the real Kubernetes backend) attests each replica once, then
the fleet re-attests as runtimes do every ``--interval`` (120 s), compressed in time:
every replica re-attests ``--rounds`` times as fast as the service allows. Measured over
the re-attestations only:

- the writes the service sent to the apiserver per re-attestation (counted at its API
  client: ``service_writes_per_reattestation``) and all writes the apiserver served (its
  ``apiserver_request_total``, any client: the control plane's own heartbeats and leader
  elections included), by resource;
- the apiserver's CPU seconds per re-attestation (``/proc``).

Both are scaled to the steady state: ``replicas / interval`` re-attestations per second
give the apiserver's writes per second and CPU (cores) that the fleet costs. In the same
run, the baseline: the apiserver idle for as long, with the same fleet and no
attestation, and the same re-attestations with the previous Lease per nonce
(``--replay-ledger=lease``). Prints one JSON line.

    .venv/bin/python benchmarks/reattestation_steady_state.py [--replicas 1000]
        [--interval 120] [--rounds 1] [--clients 16] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import uvloop
from kbs_bench import Apiserver, ServerSpec, Service, attest_once, dump, wait_ready

from enclave_runtime.quoting.provision import provision
from enclave_runtime.sgx.platform import SimulatedPlatform
from kubetee.attestation_service.sessions import PodRef
from kubetee.attestation_service.tls import generate


def _say(message: str) -> None:
    print(f"[steady-state benchmark] {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _attest_all(
    url: str,
    context: ssl.SSLContext,
    platform: SimulatedPlatform,
    pods: list[PodRef],
    *,
    clients: int,
    what: str,
) -> float:
    """Each pod attests once, ``clients`` at a time; returns the seconds it took."""
    queue: asyncio.Queue[PodRef] = asyncio.Queue()
    for pod in pods:
        queue.put_nowait(pod)
    done = 0
    start = time.monotonic()

    async def client() -> None:
        nonlocal done
        while not queue.empty():
            await attest_once(url, context, platform, queue.get_nowait())
            done += 1
            if done % 200 == 0:
                _say(f"{what}: {done}/{len(pods)}")

    await asyncio.gather(*(client() for _ in range(clients)))
    return time.monotonic() - start


def _measure(
    apiserver: Apiserver,
    action: Callable[[], float],
    attestations: int,
    steady_rate: float,
    service: Service | None = None,
) -> dict[str, Any]:
    cpu, before = apiserver.cpu_seconds(), apiserver.mutating_requests_by_resource()
    sent = service.writes() if service is not None else 0
    seconds = action()
    cpu = apiserver.cpu_seconds() - cpu
    after = apiserver.mutating_requests_by_resource()
    by_resource = {
        name: after[name] - before.get(name, 0)
        for name in sorted(after)
        if after[name] != before.get(name, 0)
    }
    served = sum(by_resource.values())
    figures: dict[str, Any] = {"seconds": round(seconds, 1)}
    if service is not None and attestations:
        # Counted at the service's own API client: its writes only.
        figures["service_writes_per_attestation"] = round(
            (service.writes() - sent) / attestations, 3
        )
    # Counted by the apiserver: any client's, by resource.
    figures["apiserver_writes_by_resource"] = by_resource
    if attestations:
        figures |= {
            "attestations": attestations,
            "apiserver_writes_per_attestation": round(served / attestations, 3),
            "apiserver_cpu_ms_per_attestation": round(1000 * cpu / attestations, 2),
            "steady_apiserver_writes_per_second": round(served / attestations * steady_rate, 2),
            "steady_apiserver_cpu_cores": round(cpu / attestations * steady_rate, 4),
        }
    else:
        figures |= {
            "apiserver_writes_per_second": round(served / seconds, 2),
            "apiserver_cpu_cores": round(cpu / seconds, 4),
        }
    return figures


@dataclass(frozen=True)
class Fleet:
    context: ssl.SSLContext
    platform: SimulatedPlatform
    pods: list[PodRef]
    args: argparse.Namespace

    def attest_all(self, url: str, what: str) -> float:
        return uvloop.run(  # as the runtimes run
            _attest_all(
                url, self.context, self.platform, self.pods, clients=self.args.clients, what=what
            )
        )

    def reattest(self, url: str) -> float:
        return sum(self.attest_all(url, "re-attest") for _ in range(self.args.rounds))


def _fleet(
    apiserver: Apiserver, spec: ServerSpec, fleet: Fleet, steady_rate: float
) -> dict[str, Any]:
    """First attestations of the fleet, then its re-attestations, with one service."""
    url = f"https://127.0.0.1:{spec.port}"
    with Service(spec) as service:
        asyncio.run(wait_ready(url, fleet.context))
        pods = len(fleet.pods)
        first = _measure(
            apiserver, partial(fleet.attest_all, url, "attest"), pods, steady_rate, service
        )
        again = _measure(
            apiserver,
            partial(fleet.reattest, url),
            pods * fleet.args.rounds,
            steady_rate,
            service,
        )
    return {"first_attestation": first, "reattestation": again}


def _idle(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=120.0, help="re-attestation period")
    parser.add_argument("--rounds", type=int, default=1, help="re-attestations per replica")
    parser.add_argument("--clients", type=int, default=16, help="runtimes attesting at once")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    steady_rate = args.replicas / args.interval

    workdir = Path(tempfile.mkdtemp(prefix="kbs-steady-", dir="/tmp"))
    try:
        platform = provision(workdir / "authority", workdir / "node-a", "node-a")
        tls = generate(workdir / "tls", ["127.0.0.1"])
        context = ssl.create_default_context(cafile=str(tls.ca))
        _say("starting a local cluster's control plane (a minute or two)")
        with Apiserver(workdir / "cluster") as apiserver:
            pods = apiserver.prepare(args.replicas, _say)
            node = apiserver.node()
            results: dict[str, Any] = {
                "benchmark": "reattestation_steady_state",
                "replicas": args.replicas,
                "interval_seconds": args.interval,
                "steady_reattestations_per_second": round(steady_rate, 2),
                "workers": args.workers,
            }
            for ledger in ("replica", "lease"):
                spec = ServerSpec(
                    workdir=workdir,
                    port=_free_port(),
                    workers=args.workers,
                    pods=args.replicas,
                    kubeconfig=apiserver.kubeconfig,
                    ledger=ledger,
                    node=node,
                )
                results[f"{ledger}_nonces"] = _fleet(
                    apiserver, spec, Fleet(context, platform, pods, args), steady_rate
                )
                if ledger == "replica":
                    duration = results[f"{ledger}_nonces"]["reattestation"]["seconds"]
                    _say(f"baseline: the apiserver idle for {duration:.0f}s with the fleet")
                    results["baseline_idle"] = _measure(
                        apiserver, partial(_idle, duration), 0, steady_rate
                    )
            idle = results["baseline_idle"]
            steady = results["replica_nonces"]["reattestation"]
            results["steady_apiserver_writes_per_second"] = round(
                steady["steady_apiserver_writes_per_second"], 2
            )
            results["service_writes_per_reattestation"] = steady["service_writes_per_attestation"]
            results["steady_cpu_ratio_to_idle"] = round(
                steady["steady_apiserver_cpu_cores"] / max(idle["apiserver_cpu_cores"], 1e-6), 3
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(dump(results))


if __name__ == "__main__":
    main()
