"""The simulated SGX enclave runtime."""
