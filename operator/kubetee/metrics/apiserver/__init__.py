"""``kubetee metrics-apiserver``: the custom metrics API (``custom.metrics.k8s.io/v1beta2``).

An aggregated API server, so an HPA can scale an EnclaveContainer on EPC without a
Prometheus stack. The kube-apiserver proxies ``/apis/custom.metrics.k8s.io/v1beta2/...``
to it (an ``APIService``) over TLS with its front-proxy client certificate and the
caller's identity in ``X-Remote-*`` headers.

* :mod:`.wire`: the JSON documents (discovery, ``MetricValueList``, ``Status``);
* :mod:`.auth`: front-proxy authentication; :mod:`.authz`: SubjectAccessReview;
* :mod:`.scrape`: the enclave runtimes' ``/metrics``, the source of every value;
* :mod:`.provider`: metric values for pods and EnclaveContainers;
* :mod:`.app`: the aiohttp application; :mod:`.cli`: the command;
* :mod:`.tls`: serving certificates; :mod:`.manifests`: APIService, Service, RBAC.
"""
