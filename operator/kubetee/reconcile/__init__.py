"""Turning watch events into reconciles: the work queues and the two reconcilers.

Modules:
    caches              kopf's indexes behind one read-only object
    queue               keyed, debounced work queue with retries
    enclavecontainers   Deployment and status of one EnclaveContainer
    epcpools            status, quotas and members of one EPCPool
    runtime             the reconcilers and queues of a running operator, and what each
                        watch event queues
"""
