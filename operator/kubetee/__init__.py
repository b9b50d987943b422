"""KubeTEE: SGX enclaves on Kubernetes."""
