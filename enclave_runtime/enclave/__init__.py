"""Enclave applications: a manifest, its measurement and signature, and the launcher.

The workflow of Occlum and Gramine, for KubeTEE's simulated SGX:

* ``kubetee enclave init`` writes a manifest (:mod:`.manifest`): the program to run,
  its arguments, the trusted files with their SHA-256, heap, threads, product id, SVN;
* ``kubetee enclave build`` measures it into MRENCLAVE (:mod:`.measure`, page by page
  as ECREATE/EADD/EEXTEND do) and signs a SIGSTRUCT with the author's key
  (:mod:`.build`); with ``--image`` it wraps a container image (:mod:`.image`);
* ``kubetee enclave run`` loads it (:mod:`.loader`: EINIT's checks and every trusted
  file against its hash), attests, and only then starts the workload with its secrets
  (:mod:`.launcher`).
"""
