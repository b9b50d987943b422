"""Verification of Intel SGX DCAP quotes and the attestation policy applied to them.

``verifier`` checks a quote against its collateral the way Intel's Quote Verification
Library does; ``policy`` then decides whether the verified enclave may have its secrets.
"""
