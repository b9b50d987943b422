"""MRENCLAVE measurement throughput, against plain SHA-256 of the same bytes.

Measuring an enclave hashes every measured page as SGX does: a 64-byte EEXTEND record
before each 256-byte chunk, so 1.25 bytes hashed per byte of content plus one hashlib call
per record and chunk. This prints, for an entrypoint of ``--mib`` MiB (plus the layout's
heap and threads), the MiB/s of ``mrenclave_of`` and of one ``hashlib.sha256`` over the
same bytes, measured in the same run, and their ratio. The launch check (`kubetee enclave
run`) pays this once per start.

    .venv/bin/python benchmarks/enclave_measure.py [--mib 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

from enclave_runtime.enclave.manifest import EnclaveManifest, TrustedFile
from enclave_runtime.enclave.measure import mrenclave_of


def _best(rounds: int, work: object) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    program = os.urandom(args.mib * 1024 * 1024)
    manifest = EnclaveManifest(
        entrypoint="app/prog",
        trusted_files=[TrustedFile(path="app/prog", sha256=hashlib.sha256(program).hexdigest())],
        heap_mi_b=64,
        threads=8,
    )
    measured = _best(args.rounds, lambda: mrenclave_of(manifest, program))
    baseline = _best(args.rounds, lambda: hashlib.sha256(program).digest())
    mib = args.mib
    print(  # the benchmark's result
        json.dumps(
            {
                "entrypoint_mib": mib,
                "mrenclave_mib_per_s": round(mib / measured, 1),
                "sha256_mib_per_s": round(mib / baseline, 1),
                "ratio_to_sha256": round(baseline / measured, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
