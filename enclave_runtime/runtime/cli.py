"""``kubetee runtime``: the enclave runtime sidecar, its startup probe, and measuring.

    kubetee runtime [run]                attest, deliver secrets, re-attest (env: settings)
    kubetee runtime probe --attested     exit 0 once attested (the startup probe)
    kubetee runtime measure --config JSON|@FILE [--files-dir DIR] [--signer-key PEM]
                                         print the MRENCLAVE/MRSIGNER of an enclave config
                                         (KUBETEE_ENCLAVE_CONFIG), to pin in a policy

Exit codes of ``run``: 0 stopped, 2 configuration, 3 attestation refused,
4 attestation or quoting service unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from enclave_runtime.quoting import QuotingClient
from enclave_runtime.runtime.attestation import tls_context
from enclave_runtime.runtime.enclave import identity_of, load_signer
from enclave_runtime.runtime.errors import RuntimeFailure
from enclave_runtime.runtime.probe import marker_dir_from_env, probe
from enclave_runtime.runtime.settings import EnclaveConfig, load_settings
from enclave_runtime.runtime.supervisor import Supervisor
from kubetee.metrics.runtime import start_runtime_metrics

log = logging.getLogger("kubetee.runtime")
PROG = "kubetee runtime"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "runtime",
        help="the enclave runtime sidecar: attestation before secrets",
        description="Attest this replica's enclave and hand the released secrets to the "
        "workload; configured by KUBETEE_* environment variables.",
    )
    parser.set_defaults(func=_run)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    run = actions.add_parser("run", help="attest, deliver secrets and re-attest (the default)")
    run.set_defaults(func=_run)
    check = actions.add_parser("probe", help="startup probe: exit 0 once attested")
    check.add_argument(
        "--attested", action="store_true", help="pass once attested (the only check; default)"
    )
    check.add_argument(
        "--state-dir", type=Path, default=None, help="default: from the runtime's environment"
    )
    check.set_defaults(func=_probe)
    measure = actions.add_parser("measure", help="print the identity of an enclave config")
    measure.add_argument("--config", required=True, help="KUBETEE_ENCLAVE_CONFIG as JSON, or @FILE")
    measure.add_argument("--files-dir", type=Path, default=Path())
    measure.add_argument("--signer-key", type=Path, default=None)
    measure.set_defaults(func=_measure)


def _run(_args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings()
        identity = identity_of(
            settings.enclave_config, settings.enclave_files_dir, load_signer(settings.signer_key)
        )
        context = tls_context(settings)
    except RuntimeFailure as failure:
        log.error("%s", failure)  # noqa: TRY400  # a configuration message, no trace
        return failure.exit_code
    except OSError as exc:
        log.error("cannot read the attestation service's CA: %s", exc)  # noqa: TRY400
        return 2
    log.info(
        "pod %s/%s: enclave %s (MRSIGNER %s, isvProdId %d, isvSvn %d%s), %d secret(s)",
        settings.pod_namespace,
        settings.pod_name,
        identity.mrenclave.hex(),
        identity.mrsigner.hex()[:16],
        identity.isv_prod_id,
        identity.isv_svn,
        ", DEBUG" if identity.debug else "",
        len(settings.secrets),
    )
    # The enclave holds its EPC from launch, before attestation: report it from now on.
    start_runtime_metrics(settings.pod_namespace, settings.pod_name, settings.enclave_container)
    supervisor = Supervisor(settings, identity, QuotingClient(settings.quoting_socket), context)
    return asyncio.run(supervisor.run())


def _probe(args: argparse.Namespace) -> int:
    passed, message = probe(args.state_dir or marker_dir_from_env(os.environ))
    (sys.stdout if passed else sys.stderr).write(message + "\n")
    return 0 if passed else 1


def _measure(args: argparse.Namespace) -> int:
    raw = args.config
    try:
        text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
        config = EnclaveConfig.model_validate_json(text)
        identity = identity_of(config, args.files_dir, load_signer(args.signer_key))
    except (OSError, ValidationError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    except RuntimeFailure as failure:
        sys.stderr.write(f"{PROG}: error: {failure}\n")
        return failure.exit_code
    sys.stdout.write(json.dumps(identity.to_json()) + "\n")
    return 0
