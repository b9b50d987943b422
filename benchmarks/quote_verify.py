"""Quote verifications per second on one core, against the raw ECDSA P-256 verify rate.

Verifies Intel's real sample quote (``tests/data/dcap``, or
``$KUBETEE_DCAP_TESTDATA``) with the cached ``QuoteVerifier`` (collateral and PCK
chain verified once, then looked up by content) and uncached (everything checked on
every call), and measures in the same run how many ECDSA P-256 signatures the
``cryptography`` package verifies per second. A quote needs at least two ECDSA
verifications (QE report, enclave report), so half the raw rate is the limit.

Prints one JSON line. Goal: the cached path at 70% of the limit or better.

    .venv/bin/python benchmarks/quote_verify.py [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from enclave_runtime.sgx.quote import ISV_SIGNED_SIZE, parse_quote
from kubetee.attestation.certificates import der_signature
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.roots import intel_sgx_root_ca_der
from kubetee.attestation.verifier import QuoteVerifier, verify_quote

NOW = 1751000000
GOAL = 0.70


def _testdata() -> Path:
    override = os.environ.get("KUBETEE_DCAP_TESTDATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "tests" / "data" / "dcap"


def _rate(operation: Callable[[], object], seconds: float) -> float:
    """Calls per second, timing batches until ``seconds`` have passed."""
    operation()
    calls = 0
    batch = 1
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for _ in range(batch):
            operation()
        calls += batch
        elapsed = time.perf_counter() - start
        batch = min(batch * 2, 512)
    return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    args = parser.parse_args()

    directory = _testdata()
    quote = (directory / "sgx_quote.bin").read_bytes()
    collateral = Collateral.load(directory / "sgx_quote_collateral.json")
    root = intel_sgx_root_ca_der()

    # The raw rate: the enclave report signature of the same quote, verified directly.
    parsed = parse_quote(quote)
    attestation_key = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b"\x04" + parsed.attestation_key
    )
    signature = der_signature(parsed.signature)
    signed = quote[:ISV_SIGNED_SIZE]
    algorithm = ec.ECDSA(hashes.SHA256())

    verifier = QuoteVerifier(root)
    operations: dict[str, Callable[[], object]] = {
        "raw": lambda: attestation_key.verify(signature, signed, algorithm),
        "cached": lambda: verifier.verify(quote, collateral, now=NOW),
        "uncached": lambda: verify_quote(quote, collateral, root_ca_der=root, now=NOW),
    }
    best = dict.fromkeys(operations, 0.0)
    # Interleaved rounds, so that load from elsewhere on the machine hits all alike.
    for _ in range(args.rounds):
        for name, operation in operations.items():
            seconds = args.seconds / 4 if name == "uncached" else args.seconds
            best[name] = max(best[name], _rate(operation, seconds))

    limit = best["raw"] / 2
    print(
        json.dumps(
            {
                "benchmark": "quote_verify",
                "cached_verifications_per_s": round(best["cached"], 1),
                "uncached_verifications_per_s": round(best["uncached"], 1),
                "raw_ecdsa_p256_verifies_per_s": round(best["raw"], 1),
                "limit_per_s": round(limit, 1),
                "cached_ratio_to_limit": round(best["cached"] / limit, 3),
                "uncached_ratio_to_limit": round(best["uncached"] / limit, 3),
                "goal_cached_ratio": GOAL,
                "goal_met": best["cached"] / limit >= GOAL,
            }
        )
    )


if __name__ == "__main__":
    main()
