"""Names the attestation service writes on the wire (pod annotations, condition, Events)."""

from __future__ import annotations

from typing import Final

from kubetee.api.v1alpha1 import GROUP

# The pod readiness gate condition the operator adds to every replica.
ATTESTED_CONDITION: Final = f"{GROUP}/attested"
# Hash of the policy the pod was last attested under, and until when that holds.
ATTESTED_POLICY_ANNOTATION: Final = f"{GROUP}/attested-policy"
ATTESTED_UNTIL_ANNOTATION: Final = f"{GROUP}/attested-until"
# What the last attestation established (JSON): lets the operator judge a replica
# against a changed policy at once, before it re-attests.
ATTESTED_CLAIMS_ANNOTATION: Final = f"{GROUP}/attested-claims"
# Set by the operator to ask a replica's runtime to attest again (value: a request id).
REATTEST_ANNOTATION: Final = f"{GROUP}/reattest-requested"
# On the pods of an EnclaveContainer (set by the operator): its name.
EC_LABEL: Final = f"{GROUP}/enclave-container"
EC_PLURAL: Final = "enclavecontainers"
COMPONENT: Final = "kubetee-attestation-service"
