"""The local Kubernetes cluster: the real control plane built from Go modules, on loopback."""
