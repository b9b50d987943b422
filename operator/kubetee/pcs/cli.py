"""``kubetee pcs``: the simulated Intel PCS, the one holder of the SGX CA and signing keys.

    kubetee pcs init --dir D
    kubetee pcs serve --authority-dir D --node-service-account NS/NAME [--registry NAME]
        [--namespace NS] [--kubeconfig F] [--audience A] --tls-cert F --tls-key F
    kubetee pcs serve --static-dir D [--tls-cert F --tls-key F]
    kubetee pcs publish-tcb [--authority-dir D] --fmspc HEX [--raise-component I]
        [--pcesvn N] [--previous-status OutOfDate] [--advisory ID]...

``serve --state-dir S`` serves the TCB evaluations from a writable copy of the
authority's settings in S (made at start unless S holds one), for an authority mounted
read-only, as the chart mounts its Secret; ``publish-tcb`` then changes S, which is its
default directory where ``$KUBETEE_PCS_STATE_DIR`` names it (the chart sets it), so
``kubectl exec deploy/<release>-pcs -- kubetee pcs publish-tcb --fmspc HEX`` works.

``--static-dir`` serves a directory of real collateral (nine-field JSON files) over the
same API and registers nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
    serve.add_argument(
        "--state-dir",
        type=Path,
        default=_state_dir(),
        help="a writable directory for the TCB evaluations publish-tcb changes, seeded "
        "from --authority-dir (default: $KUBETEE_PCS_STATE_DIR)",
    )
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

    publish = actions.add_parser(
        "publish-tcb",
        help="publish a newer TCB evaluation for one platform family",
        description="Raise the SVNs an FMSPC's UpToDate level requires, mark the earlier "
        "levels (at best) PREVIOUS_STATUS with the advisory, and bump the "
        "tcbEvaluationDataNumber. A running `pcs serve` of the same directory signs "
        "collateral from it at its next request.",
    )
    state = _state_dir()
    publish.add_argument(
        "--authority-dir",
        type=Path,
        default=state,
        required=state is None,
        help="the authority, or the --state-dir of the PCS serving it "
        "(default: $KUBETEE_PCS_STATE_DIR)",
    )
    publish.add_argument("--fmspc", required=True, help="the family, 12 hex digits")
    publish.add_argument(
        "--raise-component",
        type=int,
        default=0,
        help="index (0..15) of the SGX TCB component the new level requires one higher",
    )
    publish.add_argument("--pcesvn", type=int, help="PCESVN the new level requires (default: same)")
    publish.add_argument(
        "--previous-status",
        default="OutOfDate",
        help="status of the earlier levels (default %(default)s)",
    )
    publish.add_argument(
        "--advisory",
        action="append",
        default=[],
        metavar="ID",
        help="advisory affecting the earlier levels, e.g. INTEL-SA-01234 (repeatable)",
    )
    publish.set_defaults(func=_publish)


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


def _publish(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime  # noqa: PLC0415

    from kubetee.pcs import evaluations  # noqa: PLC0415

    try:
        fmspc = bytes.fromhex(args.fmspc) if args.fmspc.isascii() else b""
    except ValueError:
        fmspc = b""
    if len(fmspc) != 6:
        return _fail("--fmspc must be 12 hex digits")
    try:
        settings = evaluations.load_settings(args.authority_dir)
        published = evaluations.publish(
            settings,
            fmspc,
            raise_component=args.raise_component,
            pcesvn=args.pcesvn,
            previous_status=args.previous_status,
            advisories=tuple(args.advisory),
            now=datetime.now(UTC),
        )
        evaluations.save_settings(args.authority_dir, settings)
    except evaluations.PublishError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"cannot write {args.authority_dir}: {error.strerror}")
    sys.stdout.write(json.dumps(published.to_json()) + "\n")
    return 0


def _state_dir() -> Path | None:
    value = os.environ.get("KUBETEE_PCS_STATE_DIR")
    return Path(value) if value else None


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
