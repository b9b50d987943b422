"""Running ``kubetee pcs serve``: the store, the registrar, TLS, and the HTTP server."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from enclave_runtime.sgx.authority import SimulatedAuthority
from kubetee.attestation_service.tls import server_context
from kubetee.k8s.sync_client import sync_api_client
from kubetee.pcs.auth import NodeAuthenticator
from kubetee.pcs.evaluations import SETTINGS_FILE, seed_state
from kubetee.pcs.registry import ConfigMapRegistry
from kubetee.pcs.registry_writes import ConfigMapRegistryWriter
from kubetee.pcs.server import Registrar, create_app
from kubetee.pcs.stores import CollateralStore, SimulatedStore, StaticStore

log = logging.getLogger(__name__)


def serve(args: argparse.Namespace, namespace: str) -> None:
    store: CollateralStore
    registrar: Registrar | None = None
    if args.authority_dir is not None:
        authority = SimulatedAuthority.load(args.authority_dir)
        settings_dir = args.authority_dir
        if args.state_dir is not None:
            settings_dir = args.state_dir
            authority.settings = seed_state(args.authority_dir, args.state_dir)
            log.info("TCB evaluations served from %s (publish-tcb changes them)", settings_dir)
        store = SimulatedStore(authority, settings_file=settings_dir / SETTINGS_FILE)
        api = sync_api_client(args.kubeconfig)
        registrar = Registrar(
            authority=authority,
            authenticator=NodeAuthenticator(
                api, audience=args.audience, node_accounts=args.node_service_account
            ),
            registry=ConfigMapRegistryWriter(api, ConfigMapRegistry(api, namespace, args.registry)),
        )
        fmspcs = authority.settings.fmspcs
        log.info(
            "simulated PCS for FMSPCs %s, both PCK CAs; registering nodes of %s into "
            "ConfigMap %s/%s",
            ", ".join(f.hex().upper() for f in fmspcs),
            ", ".join(args.node_service_account),
            namespace,
            args.registry,
        )
    else:
        static = StaticStore(args.static_dir)
        store = static
        log.info(
            "static PCCS serving %s (FMSPCs %s); no registration",
            args.static_dir,
            ", ".join(f.hex().upper() for f in static.fmspcs),
        )
    context = server_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    scheme = "https" if context else "http"
    log.info("listening on %s://%s:%d", scheme, args.host, args.port)
    web.run_app(
        create_app(store, registrar),
        host=args.host,
        port=args.port,
        ssl_context=context,
        access_log=None,
        print=None,
    )
