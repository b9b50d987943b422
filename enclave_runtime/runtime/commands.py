"""``kubetee runtime run`` and ``measure``: the runtime's work, with its heavy imports."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import uvloop
from pydantic import ValidationError

from enclave_runtime.quoting import QuotingClient
from enclave_runtime.runtime.attestation import tls_context
from enclave_runtime.runtime.enclave import identity_of, load_signer
from enclave_runtime.runtime.errors import RuntimeFailure
from enclave_runtime.runtime.settings import EnclaveConfig, load_settings
from enclave_runtime.runtime.supervisor import Supervisor
from kubetee.metrics.runtime import start_runtime_metrics

log = logging.getLogger("kubetee.runtime")
PROG = "kubetee runtime"


def run(_args: argparse.Namespace) -> int:
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
    # uvloop: cheaper TLS records and loop for the KBS exchanges (docs/attestation.md).
    return uvloop.run(supervisor.run())


def measure(args: argparse.Namespace) -> int:
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
