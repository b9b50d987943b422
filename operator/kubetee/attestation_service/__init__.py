"""The attestation service: secrets only for enclaves that passed attestation.

It speaks the Confidential Containers Key Broker Service protocol (see
:mod:`enclave_runtime.kbs_protocol`), verifies SGX DCAP quotes with
:mod:`kubetee.attestation`, judges them by the EnclaveContainer's
``attestation.policy`` and releases that EnclaveContainer's ``spec.secrets``,
read from Kubernetes Secrets, wrapped to the enclave's ephemeral key.

Layers: ``app`` (HTTP) -> ``sessions``, ``replay``, ``evidence``, ``workloads``
(protocol logic) -> ``kubernetes_backend`` (the API). Stateless: run as many
replicas as load needs; they share only the session key and the nonce Leases.
"""
