"""``kubetee quote``: verify, simulate and inspect SGX DCAP quotes.

Each command prints one JSON object to stdout. ``verify`` exits 0 when the quote is
verified, 1 when it is refused (``error`` holds the stable code); usage errors, such
as an unreadable file, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from enclave_runtime.sgx import _pki
from enclave_runtime.sgx.authority import SimulatedAuthority
from enclave_runtime.sgx.enclave import EnclaveSigner, make_report_body, measure_enclave
from enclave_runtime.sgx.pck_extension import SGX_EXTENSION_OID, PckExtensionError, SgxExtension
from enclave_runtime.sgx.quote import QuoteFormatError, ReportBody, parse_quote
from kubetee.attestation.collateral import Collateral
from kubetee.attestation.errors import AttestationError
from kubetee.attestation.policy import AttestationPolicy, apply_policy
from kubetee.attestation.roots import intel_sgx_root_ca_der, root_ca_der
from kubetee.attestation.verified import ACCEPTABLE_TCB_STATUSES, TCB_STATUSES
from kubetee.attestation.verifier import verify_quote

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


class _UsageError(Exception):
    pass


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quote", help="verify, simulate and inspect SGX DCAP ECDSA quotes (v3)"
    )
    commands = parser.add_subparsers(dest="quote_command", metavar="COMMAND", required=True)

    verify = commands.add_parser(
        "verify", help="verify a quote against its collateral; print the result as JSON"
    )
    verify.add_argument("quote", type=Path, metavar="QUOTE", help="the quote (binary)")
    verify.add_argument(
        "--collateral",
        type=Path,
        required=True,
        metavar="FILE",
        help="collateral JSON with the nine DCAP fields",
    )
    verify.add_argument(
        "--root-ca",
        type=Path,
        metavar="FILE",
        help="trusted root CA (DER or PEM); default: Intel's SGX Root CA",
    )
    verify.add_argument(
        "--now",
        type=int,
        metavar="UNIX_SECONDS",
        help="verification time; default: the current time",
    )
    verify.add_argument(
        "--allow-debug", action="store_true", help="accept enclaves running in DEBUG mode"
    )
    verify.set_defaults(func=_verify)

    simulate = commands.add_parser(
        "simulate", help="write a quote of a simulated platform with its collateral and root"
    )
    simulate.add_argument("--out-dir", type=Path, required=True, metavar="DIR")
    simulate.add_argument(
        "--report-data", default="", metavar="HEX", help="up to 64 bytes of report data, hex"
    )
    simulate.add_argument("--debug", action="store_true", help="quote a DEBUG enclave")
    simulate.add_argument(
        "--tcb-status",
        default="UpToDate",
        choices=("UpToDate", "SWHardeningNeeded", "OutOfDate", "Revoked"),
        help="the TCB status the simulated platform has (default UpToDate)",
    )
    simulate.set_defaults(func=_simulate)

    inspect = commands.add_parser("inspect", help="print the fields of a quote as JSON")
    inspect.add_argument("quote", type=Path, metavar="QUOTE")
    inspect.set_defaults(func=_inspect)


def _print(document: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def _usage(message: str) -> int:
    sys.stderr.write(f"kubetee quote: {message}\n")
    return EXIT_USAGE


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise _UsageError(f"cannot read {what} {path}: {error.strerror}") from None


def _verify(args: argparse.Namespace) -> int:
    try:
        quote = _read(args.quote, "quote")
        collateral_json = _read(args.collateral, "collateral")
        if args.root_ca is None:
            root = intel_sgx_root_ca_der()
        else:
            try:
                root = root_ca_der(_read(args.root_ca, "root CA"))
            except ValueError:
                raise _UsageError(f"{args.root_ca} is not a DER or PEM certificate") from None
    except _UsageError as error:
        return _usage(str(error))
    # The CLI reports any TCB status a genuine platform can have; only DEBUG is a choice.
    policy = AttestationPolicy(
        allow_debug=args.allow_debug, accepted_tcb_statuses=list(ACCEPTABLE_TCB_STATUSES)
    )
    try:
        collateral = Collateral.from_json(collateral_json)
        verified = verify_quote(quote, collateral, root_ca_der=root, now=args.now)
        apply_policy(verified, policy)
    except AttestationError as error:
        _print({"verified": False, "error": error.code, "message": error.message})
        return EXIT_REFUSED
    _print(verified.to_json())
    return EXIT_OK


def _simulate(args: argparse.Namespace) -> int:
    try:
        report_data = bytes.fromhex(args.report_data)
    except ValueError:
        return _usage("--report-data must be hex")
    if len(report_data) > 64:
        return _usage("--report-data holds at most 64 bytes")
    if args.tcb_status not in TCB_STATUSES:
        return _usage(f"unknown TCB status {args.tcb_status}")
    issued = _pki.utc_now() - timedelta(minutes=5)
    authority = SimulatedAuthority.generate(now=issued)
    platform = authority.issue_platform(args.tcb_status, now=issued)
    signer = EnclaveSigner.generate()
    mrenclave = measure_enclave(
        {"bin/hello": b"simulated enclave"}, {"entrypoint": "bin/hello", "heapSize": "64Mi"}
    )
    body = make_report_body(
        mrenclave,
        signer.mrsigner,
        debug=args.debug,
        isv_prod_id=1,
        isv_svn=1,
        report_data=report_data,
    )
    quote = platform.quote(body)
    out: Path = args.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "quote.bin").write_bytes(quote)
        (out / "collateral.json").write_text(
            json.dumps(authority.collateral(now=issued), indent=2) + "\n"
        )
        (out / "root_ca.der").write_bytes(authority.root_ca_der)
        now = int(issued.timestamp()) + 300
        (out / "now.txt").write_text(f"{now}\n")
    except OSError as error:
        return _usage(f"cannot write to {out}: {error.strerror}")
    _print(
        {
            "out_dir": str(out),
            "tcb_status": args.tcb_status,
            "mrenclave": mrenclave.hex(),
            "mrsigner": signer.mrsigner.hex(),
            "debug": args.debug,
            "now": now,
        }
    )
    return EXIT_OK


def _report_json(body: ReportBody) -> dict[str, object]:
    return {
        "cpu_svn": body.cpu_svn.hex(),
        "misc_select": body.misc_select,
        "attributes": body.attributes.hex(),
        "debug": body.debug,
        "mrenclave": body.mrenclave.hex(),
        "mrsigner": body.mrsigner.hex(),
        "isv_prod_id": body.isv_prod_id,
        "isv_svn": body.isv_svn,
        "config_svn": body.config_svn,
        "report_data": body.report_data.hex(),
    }


def _certificates_json(pem: bytes) -> list[dict[str, object]]:
    try:
        chain = x509.load_pem_x509_certificates(pem.rstrip(b"\0"))
    except ValueError:
        return []
    result: list[dict[str, object]] = []
    for certificate in chain:
        entry: dict[str, object] = {
            "subject": certificate.subject.rfc4514_string(),
            "issuer": certificate.issuer.rfc4514_string(),
            "serial": format(certificate.serial_number, "x"),
            "not_before": certificate.not_valid_before_utc.isoformat(),
            "not_after": certificate.not_valid_after_utc.isoformat(),
        }
        try:
            raw = certificate.extensions.get_extension_for_oid(
                x509.ObjectIdentifier(SGX_EXTENSION_OID)
            ).value
            extension = SgxExtension.from_der(raw.public_bytes())
        except (x509.ExtensionNotFound, ValueError, PckExtensionError):
            extension = None
        if extension is not None:
            # The PPID identifies the machine; inspect leaves it out.
            entry["sgx_extension"] = {
                "fmspc": extension.fmspc.hex().upper(),
                "pce_id": extension.pce_id.hex().upper(),
                "tcb_components": list(extension.tcb_components),
                "pcesvn": extension.pcesvn,
                "cpusvn": extension.cpusvn.hex(),
                "sgx_type": extension.sgx_type,
            }
        result.append(entry)
    return result


def _inspect(args: argparse.Namespace) -> int:
    try:
        data = _read(args.quote, "quote")
    except _UsageError as error:
        return _usage(str(error))
    try:
        quote = parse_quote(data)
    except QuoteFormatError as error:
        _print({"error": error.code, "message": str(error)})
        return EXIT_REFUSED
    header = quote.header
    _print(
        {
            "size": len(data),
            "header": {
                "version": header.version,
                "attestation_key_type": header.attestation_key_type,
                "qe_svn": header.qe_svn,
                "pce_svn": header.pce_svn,
                "qe_vendor_id": header.qe_vendor_id.hex(),
                "user_data": header.user_data.hex(),
            },
            "report_body": _report_json(quote.report_body),
            "signature": quote.signature.hex(),
            "attestation_key": quote.attestation_key.hex(),
            "qe_report": _report_json(quote.qe_report),
            "qe_report_signature": quote.qe_report_signature.hex(),
            "qe_auth_data": quote.qe_auth_data.hex(),
            "certification_data_type": quote.certification_data_type,
            "pck_certificates": _certificates_json(quote.certification_data),
        }
    )
    return EXIT_OK
