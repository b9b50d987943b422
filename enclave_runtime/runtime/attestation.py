"""One attestation round: key, challenge, quote, evidence, secrets.

It speaks the KBS protocol exactly as a stock client (CoCo's kbs_protocol) does: no
extra-params at ``/auth``; init-data naming this pod, bound into the quote's CONFIGID;
runtime data ``{nonce, tee-pubkey}`` bound into REPORTDATA; resources at
``<namespace>/<EnclaveContainer>/<secret>``. The ephemeral key pair lives only in this
round's memory: secrets released to it cannot be unwrapped by anyone else, and a new
round makes a new key (and a new quote, bound to the new nonce).

The supervisor keeps one :class:`KbsClient` per service URL for the runtime's life, so
re-attestation reuses the connection while the service keeps it; a round whose kept
connection was closed under it starts again once on a new connection.
"""

from __future__ import annotations

import base64
import logging
import ssl
from dataclasses import dataclass

from enclave_runtime.kbs_protocol import (
    Attestation,
    CompositeEvidence,
    RuntimeData,
    SgxEvidence,
    TeeKeyPair,
    decrypt_response,
    report_data_for,
)
from enclave_runtime.kbs_protocol.client import KbsClient
from enclave_runtime.kbs_protocol.errors import KbsConnectionLostError
from enclave_runtime.kbs_protocol.init_data import PodIdentity, pod_launch_data
from enclave_runtime.quoting import QuotingClient
from enclave_runtime.runtime.enclave import EnclaveIdentity
from enclave_runtime.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

# Past the re-attestation interval, so the client never closes a connection the service
# would still keep for the next round.
_KEEPALIVE_MARGIN_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class AttestationOutcome:
    """What a successful round yields: the released secrets by name."""

    secrets: dict[str, bytes]

    def __repr__(self) -> str:  # never print the values
        return f"AttestationOutcome(secrets={sorted(self.secrets)})"


def kbs_client(settings: RuntimeSettings, context: ssl.SSLContext, url: str) -> KbsClient:
    """A client for ``url`` that keeps its connection from one round to the next (the
    service's keep-alive timeout decides whether it is still open then)."""
    return KbsClient(
        url,
        ssl_context=context,
        timeout_seconds=min(30.0, settings.attest_timeout_seconds),
        keepalive_seconds=settings.reattest_interval_seconds + _KEEPALIVE_MARGIN_SECONDS,
    )


def tls_context(settings: RuntimeSettings) -> ssl.SSLContext:
    """Trust only the CA the operator handed over for the attestation service, if any."""
    if settings.attestation_ca_pem:
        return ssl.create_default_context(cadata=settings.attestation_ca_pem)
    if settings.attestation_ca is not None:
        return ssl.create_default_context(cafile=str(settings.attestation_ca))
    return ssl.create_default_context()


async def attest_once(  # noqa: PLR0917  # the round's collaborators
    settings: RuntimeSettings,
    identity: EnclaveIdentity,
    quoting: QuotingClient,
    context: ssl.SSLContext,
    url: str | None = None,
    kbs: KbsClient | None = None,
) -> AttestationOutcome:
    """Run auth, quote, attest and fetch every secret at ``url`` (default: the first
    configured), on ``kbs`` (kept open) or a client of this round only; raises
    ``KbsClientError`` or ``QuotingError`` when a step fails."""
    if kbs is None:
        async with kbs_client(settings, context, url or settings.attestation_urls[0]) as own:
            return await _round(settings, identity, quoting, own)
    try:
        return await _round(settings, identity, quoting, kbs)
    except KbsConnectionLostError as exc:
        # The kept connection closed mid-round (the service closed it as idle just
        # then, or its process stopped): this round's nonce went with it.
        log.info("connection to the attestation service lost mid-round (%s); new round", exc)
        return await _round(settings, identity, quoting, kbs)


async def _round(
    settings: RuntimeSettings, identity: EnclaveIdentity, quoting: QuotingClient, kbs: KbsClient
) -> AttestationOutcome:
    key_pair = TeeKeyPair.generate(settings.tee_key_curve)
    # The same init-data and CONFIGID in every round: made once for the pod.
    launch = pod_launch_data(
        PodIdentity(namespace=settings.pod_namespace, name=settings.pod_name, uid=settings.pod_uid)
    )
    challenge = await kbs.auth()
    runtime_data = RuntimeData(nonce=challenge.nonce, tee_pubkey=key_pair.public_jwk())
    # The enclave is launched for this pod: CONFIGID carries the init-data's digest.
    body = identity.report_body(report_data_for(runtime_data), config_id=launch.config_id)
    quote = await quoting.quote(body)
    evidence = SgxEvidence(quote=base64.b64encode(quote).decode())
    await kbs.attest(
        Attestation(
            init_data=launch.init_data,
            runtime_data=runtime_data,
            tee_evidence=CompositeEvidence(primary_evidence=evidence.to_wire()),
        )
    )
    secrets: dict[str, bytes] = {}
    for spec in settings.secrets:
        response = await kbs.resource(settings.pod_namespace, settings.enclave_container, spec.name)
        secrets[spec.name] = decrypt_response(response, key_pair)
    return AttestationOutcome(secrets=secrets)
