"""The enclave runtime: the native sidecar that attests a replica before it gets secrets.

``kubetee runtime run`` measures the enclave named by the EnclaveContainer's
``spec.enclave``, attests it to the attestation service with a quote from the node's
quoting service, writes the released secrets into the pod's memory-backed volume and
only then marks itself started, so the workload containers (which the kubelet starts
after the sidecar's startup probe passes) never run without attestation.
It re-attests on an interval and on SIGHUP.

Modules: ``settings`` (the environment contract with the operator and the device
plugin), ``enclave`` (measurement and report), ``attestation`` (one KBS round),
``delivery`` (writing secrets), ``supervisor`` (the loop, retries, exit codes),
``probe`` (the startup probe).
"""
