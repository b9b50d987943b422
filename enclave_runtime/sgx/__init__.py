"""A simulated Intel SGX platform that produces quotes in the real DCAP ECDSA v3 format.

``quote`` is the wire format, ``enclave`` the enclave identity (MRENCLAVE, MRSIGNER),
``authority`` the simulated Intel provisioning PKI and collateral, ``platform`` one
simulated machine with its PCK certificate and Quoting Enclave.
"""
