"""``kubetee pcs``: the simulated Intel PCS, the one holder of the SGX CA and signing keys.

    kubetee pcs init --dir D
    kubetee pcs serve --authority-dir D --node-service-account NS/NAME [--registry NAME]
        [--namespace NS] [--kubeconfig F] [--audience A] --tls-cert F --tls-key F
    kubetee pcs serve --static-dir D [--tls-cert F --tls-key F]

``--static-dir`` serves a directory of real collateral (nine-field JSON files) over the
same API and registers nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from enclave_runtime.quoting.registration import PCS_AUDIENCE

PROG = "kubetee pcs"
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "pcs",
        help="the simulated Intel PCS: PCK certificates for nodes, PCCS v4 collateral",
        description="Hold the simulated SGX authority's keys, certify the platforms nodes "
        "register and serve collateral over the PCCS/PCS v4 API; or serve real collateral "
        "from a directory.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    init = actions.add_parser("init", help="create the simulated authority (kept if present)")
    init.add_argument("--dir", type=Path, required=True, help="where its keys are written")
    init.set_defaults(func=_init)

    serve = actions.add_parser("serve", help="serve the PCCS v4 API (and registration)")
    source = serve.add_mutually_exclusive_group(required=True)
    source.add_argument("--authority-dir", type=Path, help="the simulated authority (pcs init)")
    source.add_argument("--static-dir", type=Path, help="a directory of real collateral *.json")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
    serve.add_argument("--port", type=int, default=8081, help="HTTPS port (default 8081)")
    serve.add_argument("--tls-cert", type=Path, help="serving certificate (PEM)")
    serve.add_argument("--tls-key", type=Path, help="its private key (PEM)")
    serve.add_argument("--kubeconfig", type=Path, help="default: in-cluster config")
    serve.add_argument(
        "--namespace", default="", help="namespace of the platform registry ConfigMap"
    )
    serve.add_argument(
        "--registry", default="kubetee-sgx-platforms", help="name of the registry ConfigMap"
    )
    serve.add_argument(
        "--node-service-account",
        action="append",
        default=[],
        metavar="NS/NAME",
        help="a ServiceAccount whose pod- or node-bound tokens are nodes (repeatable)",
    )
    serve.add_argument(
        "--audience", default=PCS_AUDIENCE, help="audience of node tokens (default %(default)s)"
    )
    serve.set_defaults(func=_serve)


def _init(args: argparse.Namespace) -> int:
    from enclave_runtime.quoting.provision import ensure_authority  # noqa: PLC0415

    authority = ensure_authority(args.dir)
    sys.stdout.write(
        json.dumps(
            {
                "dir": str(args.dir),
                "root_ca": str(args.dir / "root_ca.pem"),
                "fmspcs": [f.hex().upper() for f in authority.settings.fmspcs],
            }
        )
        + "\n"
    )
    return 0


def _fail(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return 2


def _serve(args: argparse.Namespace) -> int:
    from kubetee.pcs.run import serve  # noqa: PLC0415  # heavy imports

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if (args.tls_cert is None) != (args.tls_key is None):
        return _fail("--tls-cert and --tls-key go together")
    if args.authority_dir is not None:
        if args.tls_cert is None:
            return _fail("registration carries node tokens: serve it over TLS (--tls-cert/key)")
        if not args.node_service_account:
            return _fail("name the node ServiceAccount(s): --node-service-account NS/NAME")
        if not (args.authority_dir / "authority.json").exists():
            return _fail(f"{args.authority_dir} holds no authority; run `{PROG} init` first")
    namespace = args.namespace or _default_namespace()
    try:
        serve(args, namespace)
    except (OSError, ValueError) as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return 1
    return 0


def _default_namespace() -> str:
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return "kubetee-system"
