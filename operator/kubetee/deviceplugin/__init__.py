"""The EPC device plugin: SGX enclave memory as a schedulable Kubernetes resource.

``kubetee device-plugin`` speaks the kubelet's device-plugin API (v1beta1, gRPC over
Unix sockets) for two extended resources: ``kubetee.io/epc`` (one device per MiB of
enclave page cache) and ``kubetee.io/enclave`` (one device per enclave slot). Each
resource has its own socket and registration, as the API requires.

Modules:
    constants   names fixed by the kubelet API and by KubeTEE
    settings    the plugin's configuration (flags and ``KUBETEE_*`` env)
    devices     a resource's devices and their health, watchable
    allocation  what Allocate and GetPreferredAllocation answer (plain functions)
    servicer    the DevicePlugin gRPC service for one resource
    faults      the simulated-fault control file
    plugin      serving, registering with the kubelet, watching its socket
    cli         ``kubetee device-plugin`` and ``kubetee device-plugin fault``
"""
