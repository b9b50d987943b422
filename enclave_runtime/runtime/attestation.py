"""One attestation round: key, challenge, quote, evidence, secrets.

The ephemeral key pair lives only in this round's memory: secrets released to it
cannot be unwrapped by anyone else, and a new round makes a new key.
"""

from __future__ import annotations

import base64
import logging
import ssl
from dataclasses import dataclass

from pydantic import JsonValue

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
from enclave_runtime.quoting import QuotingClient
from enclave_runtime.runtime.enclave import EnclaveIdentity
from enclave_runtime.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

POD_PARAM = "kubetee.io/pod"
SECRET_RESOURCE_TYPE = "secret"  # noqa: S105  # a KBS resource type, not a password


@dataclass(frozen=True, slots=True)
class AttestationOutcome:
    """What a successful round yields: the released secrets by name."""

    secrets: dict[str, bytes]

    def __repr__(self) -> str:  # never print the values
        return f"AttestationOutcome(secrets={sorted(self.secrets)})"


def tls_context(settings: RuntimeSettings) -> ssl.SSLContext:
    """Trust only the CA the operator handed over for the attestation service, if any."""
    if settings.attestation_ca_pem:
        return ssl.create_default_context(cadata=settings.attestation_ca_pem)
    if settings.attestation_ca is not None:
        return ssl.create_default_context(cafile=str(settings.attestation_ca))
    return ssl.create_default_context()


async def attest_once(
    settings: RuntimeSettings,
    identity: EnclaveIdentity,
    quoting: QuotingClient,
    context: ssl.SSLContext,
) -> AttestationOutcome:
    """Run auth, quote, attest and fetch every secret; raises ``KbsClientError`` or
    ``QuotingError`` when a step fails."""
    key_pair = TeeKeyPair.generate(settings.tee_key_curve)
    pod: dict[str, JsonValue] = {
        "namespace": settings.pod_namespace,
        "name": settings.pod_name,
        "uid": settings.pod_uid,
    }
    async with KbsClient(
        settings.attestation_url,
        ssl_context=context,
        timeout_seconds=min(30.0, settings.attest_timeout_seconds),
    ) as kbs:
        challenge = await kbs.auth({POD_PARAM: pod})
        runtime_data = RuntimeData(nonce=challenge.nonce, tee_pubkey=key_pair.public_jwk())
        quote = await quoting.quote(identity.report_body(report_data_for(runtime_data)))
        evidence = SgxEvidence(quote=base64.b64encode(quote).decode())
        await kbs.attest(
            Attestation(
                runtime_data=runtime_data,
                tee_evidence=CompositeEvidence(primary_evidence=evidence.to_wire()),
            )
        )
        secrets: dict[str, bytes] = {}
        for spec in settings.secrets:
            response = await kbs.resource(
                settings.enclave_container, SECRET_RESOURCE_TYPE, spec.name
            )
            secrets[spec.name] = decrypt_response(response, key_pair)
    return AttestationOutcome(secrets=secrets)
