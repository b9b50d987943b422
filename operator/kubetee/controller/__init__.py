"""The operator's decisions as plain functions: no kopf, no API calls.

Modules:
    names       labels, annotations, resources and condition types the operator uses
    views       the few fields of Nodes, Pods, Deployments and custom resources it reads
    conditions  conditions that keep lastTransitionTime until their status changes
    accounting  EPC per node: capacity, allocatable, allocated, free
    sidecar     the enclave runtime sidecar container of each replica
    deployment  the Deployment that runs an EnclaveContainer's replicas
    ecstatus    status of an EnclaveContainer from its pods and its pool
    poolstatus  status of an EPCPool from its nodes and their pods
"""
