"""Access to the Kubernetes API: the asyncio client, error mapping, the operator's writes.

Modules:
    errors  API failures mapped onto kopf's temporary and permanent errors
    client  connecting with the kubeconfig or the in-cluster service account
    sync_client  the same for the synchronous client of the other components
    writes  every write the operator makes (apply, status, events, quotas), counted
"""
