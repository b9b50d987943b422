"""``kubetee attestation-service``: the KBS-protocol attestation service.

    kubetee attestation-service serve --tls-cert F --tls-key F --session-key-file F
        (--pccs-url URL [--pccs-ca F] | --collateral F) [--root-ca F]
        [--platform-registry [NS/]NAME] [--kubeconfig F] ...
    kubetee attestation-service gen-tls --out-dir D --host NAME [--host NAME ...]
    kubetee attestation-service gen-session-key --out F

Every ``serve`` flag can also come from ``KUBETEE_KBS_<FLAG>`` (e.g. KUBETEE_KBS_PORT).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kubetee.attestation_service import tls
from kubetee.attestation_service.settings import ServiceSettings

PROG = "kubetee attestation-service"
SESSION_KEY_BYTES = 48


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "attestation-service",
        help="the attestation service (KBS protocol): secrets only after attestation",
        description="Verify SGX quotes against EnclaveContainer policies and release their "
        "secrets, wrapped to the enclave's key, over the Confidential Containers KBS protocol.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    serve = actions.add_parser("serve", help="serve the KBS protocol over HTTPS")
    for name, field in ServiceSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        serve.add_argument(flag, dest=name, default=None, help=field.description)
    serve.set_defaults(func=_serve)

    gen_tls = actions.add_parser("gen-tls", help="write a private CA and a serving certificate")
    gen_tls.add_argument("--out-dir", type=Path, required=True)
    gen_tls.add_argument("--host", action="append", required=True, help="DNS name or IP")
    gen_tls.set_defaults(func=_gen_tls)

    gen_key = actions.add_parser("gen-session-key", help="write a random shared session key")
    gen_key.add_argument("--out", type=Path, required=True)
    gen_key.set_defaults(func=_gen_session_key)


def _serve(args: argparse.Namespace) -> int:
    from kubetee.attestation_service.server import run  # noqa: PLC0415  # heavy imports

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    flags = {
        name: getattr(args, name)
        for name in ServiceSettings.model_fields
        if getattr(args, name, None) is not None
    }
    try:
        settings = ServiceSettings(**flags)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-') or 'settings'}: {e['msg']}"
            for e in exc.errors()
        )
        sys.stderr.write(f"{PROG}: error: {problems}\n")
        return 2
    try:
        run(settings)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1
    return 0


def _gen_tls(args: argparse.Namespace) -> int:
    files = tls.generate(args.out_dir, args.host)
    sys.stdout.write(f"wrote {files.ca}, {files.certificate}, {files.key}\n")
    return 0


def _gen_session_key(args: argparse.Namespace) -> int:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(SESSION_KEY_BYTES) + "\n")
    sys.stdout.write(f"wrote {args.out}\n")
    return 0
