"""The attestation service's own handlers behind a native HTTP/1.1 and TLS server, for the
benchmark to compare transports: Granian (Rust: hyper and rustls, RSGI), in worker
processes of its own, in place of the service's uvloop server.

Granian imports ``app`` from this module in each of its workers (``--factory``); the
service is the benchmark's (:func:`kbs_bench.service_for`), read from the pickled
``ServerSpec`` that ``$KUBETEE_BENCH_SPEC`` names. Not a benchmark itself.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from kbs_bench import ServerSpec, process_cpu_seconds, process_stat, process_waits, service_for

from kubetee.attestation_service.app import create_app
from kubetee.attestation_service.http_messages import HttpRequest

SPEC_VARIABLE = "KUBETEE_BENCH_SPEC"


def why_unavailable() -> str | None:
    """None when Granian can be run, else why not."""
    if find_spec("granian") is None:
        return "granian is not installed (.venv/bin/pip install -e '.[dev]')"
    return None


def app() -> Callable[[Any, Any], Awaitable[None]]:
    """The RSGI application of one Granian worker: the service's app, request by request."""
    spec: ServerSpec = pickle.loads(Path(os.environ[SPEC_VARIABLE]).read_bytes())  # noqa: S301  # written by this benchmark
    kbs = create_app(service_for(spec))

    async def rsgi(scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        body = await protocol()
        headers = {name.lower(): value for name, value in scope.headers.items()}
        answer = await kbs(HttpRequest(scope.method, scope.path, headers, body))
        protocol.response_bytes(
            answer.status, [("content-type", answer.content_type), *answer.headers], answer.body
        )

    return rsgi


class NativeTransportService:
    """Granian serving the service on ``spec.port`` with ``spec.workers`` workers; the
    benchmark's interface of :class:`kbs_bench.Service` (CPU, waits) over all its
    processes."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NativeTransportService:
        workdir = self.spec.workdir
        (workdir / "spec.pickle").write_bytes(pickle.dumps(self.spec))
        key = load_pem_private_key((workdir / "tls" / "tls.key").read_bytes(), None)
        pkcs8 = workdir / "tls" / "tls.pkcs8.key"  # the only key format Granian reads
        pkcs8.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        pkcs8.chmod(0o600)
        here = str(Path(__file__).resolve().parent)
        env = os.environ | {
            SPEC_VARIABLE: str(workdir / "spec.pickle"),
            "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
        }
        # In a session of its own, so that all its processes are found and stopped together.
        self._process = subprocess.Popen(
            [
                *(sys.executable, "-m", "granian", "--interface", "rsgi", "--factory"),
                *("--host", "127.0.0.1", "--port", str(self.spec.port), "--http", "1"),
                *("--workers", str(self.spec.workers), "--runtime-threads", "1"),
                *("--loop", self.spec.loop, "--no-ws", "--log-level", "warning"),
                *("--ssl-certificate", str(workdir / "tls" / "tls.crt")),
                *("--ssl-keyfile", str(pkcs8)),
                "kbs_native_transport:app",
            ],
            env=env,
            start_new_session=True,
        )
        return self

    def __exit__(self, *_: object) -> None:
        if self._process is not None:
            os.killpg(self._process.pid, signal.SIGINT)
            self._process.wait(timeout=30)

    def _pids(self) -> list[int]:
        assert self._process is not None
        group = self._process.pid
        pids = []
        for directory in Path("/proc").glob("[0-9]*"):
            try:
                if int(process_stat(int(directory.name))[2]) == group:
                    pids.append(int(directory.name))
            except OSError:  # gone meanwhile
                continue
        return pids

    def cpu_seconds_by_worker(self) -> list[float]:
        """All of Granian's processes as one: its threads hand requests across them."""
        return [sum(process_cpu_seconds(pid) for pid in self._pids())]

    def waits(self) -> int:
        return sum(process_waits(pid) for pid in self._pids())
