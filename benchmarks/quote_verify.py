"""Quote verifications per second on one core, against the raw ECDSA P-256 verify rate
and an independent Rust DCAP verifier.

Verifies Intel's real sample quote (``tests/data/dcap``, or
``$KUBETEE_DCAP_TESTDATA``) with the Python verifier three ways:

- cached: one ``QuoteVerifier`` (collateral and PCK chain trusted once, then looked up);
- uncached: a fresh ``QuoteVerifier`` per call (``verify_quote``); what depends on bytes
  alone (reading the chain, CRLs, TCB Info and QE Identity, and their signatures) is
  remembered by content for the process (``kubetee.attestation.content_cache``), the
  rest is checked every call;
- cold: the same, with that memory emptied before every call (everything read and
  every signature checked each time).

In the same run: how many ECDSA P-256 signatures ``cryptography`` verifies per second
(a quote needs at least two, so half that is the limit), and Phala's ``dcap-qvl``
(Rust, ring; ``benchmarks/dcap_qvl_baseline``) verifying the same quote with the same
collateral, uncached, built with ``cargo`` on first use (a few minutes; skipped with a
reason when cargo is missing or the build fails, or with ``--no-rust``).

Prints one JSON line. Goals: cached at 70% of the limit or better; uncached at least
as fast as dcap-qvl.

    .venv/bin/python benchmarks/quote_verify.py [--seconds 2] [--rounds 3] [--no-rust]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from enclave_runtime.sgx.quote import ISV_SIGNED_SIZE, parse_quote
from kubetee.attestation import content_cache
from kubetee.attestation.certificates import der_signature
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.roots import intel_sgx_root_ca_der
from kubetee.attestation.verifier import QuoteVerifier, verify_quote

NOW = 1751000000
GOAL = 0.70
_RUST_CRATE = Path(__file__).resolve().parent / "dcap_qvl_baseline"


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


def _rust_baseline(directory: Path, seconds: float) -> dict[str, object]:
    """dcap-qvl's rate on the same quote, or why there is none."""
    cargo = shutil.which("cargo")
    if cargo is None:
        return {"skipped": "cargo is not installed (rustup or the Debian cargo package)"}
    target = Path(os.environ.get("CARGO_TARGET_DIR", _RUST_CRATE / "target"))
    binary = target / "release" / "dcap-qvl-baseline"
    if not binary.exists():
        print("building the dcap-qvl baseline with cargo (first run: minutes)...", file=sys.stderr)
    manifest = str(_RUST_CRATE / "Cargo.toml")
    build = subprocess.run(
        [cargo, "build", "--release", "--quiet", "--manifest-path", manifest],
        env={**os.environ, "CARGO_TARGET_DIR": str(target)},
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        return {"skipped": f"cargo build failed: {build.stderr.strip()[-300:]}"}
    run = subprocess.run(
        [
            str(binary),
            str(directory / "sgx_quote.bin"),
            str(directory / "sgx_quote_collateral.json"),
            str(NOW),
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        return {"skipped": f"dcap-qvl refused the quote: {run.stderr.strip()[-300:]}"}
    result: dict[str, object] = json.loads(run.stdout)
    return result


def _cold(verify: Callable[[], object]) -> Callable[[], object]:
    def operation() -> object:
        content_cache.forget()
        return verify()

    return operation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    parser.add_argument("--no-rust", action="store_true", help="skip the dcap-qvl baseline")
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

    def uncached() -> object:
        return verify_quote(quote, collateral, root_ca_der=root, now=NOW)

    operations: dict[str, Callable[[], object]] = {
        "raw": lambda: attestation_key.verify(signature, signed, algorithm),
        "cached": lambda: verifier.verify(quote, collateral, now=NOW),
        "uncached": uncached,
        "cold": _cold(uncached),
    }
    best = dict.fromkeys([*operations, "rust"], 0.0)
    rust: dict[str, object] = {"skipped": "--no-rust"}
    # Interleaved rounds, so that load from elsewhere on the machine hits all alike.
    for _ in range(args.rounds):
        for name, operation in operations.items():
            seconds = args.seconds / 4 if name == "cold" else args.seconds
            best[name] = max(best[name], _rate(operation, seconds))
        if not args.no_rust:
            rust = _rust_baseline(directory, args.seconds)
            rate = rust.get("verifications_per_s")
            if isinstance(rate, int | float):
                best["rust"] = max(best["rust"], float(rate))

    limit = best["raw"] / 2
    figures: dict[str, object] = {
        "benchmark": "quote_verify",
        "cached_verifications_per_s": round(best["cached"], 1),
        "uncached_verifications_per_s": round(best["uncached"], 1),
        "cold_verifications_per_s": round(best["cold"], 1),
        "raw_ecdsa_p256_verifies_per_s": round(best["raw"], 1),
        "limit_per_s": round(limit, 1),
        "cached_ratio_to_limit": round(best["cached"] / limit, 3),
        "uncached_ratio_to_limit": round(best["uncached"] / limit, 3),
        "goal_cached_ratio": GOAL,
        "goal_met": best["cached"] / limit >= GOAL,
    }
    if best["rust"] > 0:
        figures |= {
            "dcap_qvl_rust_verifications_per_s": round(best["rust"], 1),
            "uncached_ratio_to_dcap_qvl": round(best["uncached"] / best["rust"], 3),
            "cold_ratio_to_dcap_qvl": round(best["cold"] / best["rust"], 3),
            "goal_uncached_met": best["uncached"] >= best["rust"],
        }
    else:
        figures["dcap_qvl_rust"] = rust
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
