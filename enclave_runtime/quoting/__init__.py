"""The node quoting service: turns an enclave's report into a DCAP quote, like Intel's aesmd.

One runs on every SGX node with that node's simulated platform (its own PCK
certificate and attestation key). Enclave runtimes on the node reach it over a Unix
socket whose path the device plugin's ``Allocate`` hands them in
``KUBETEE_QUOTING_SOCKET``, as real clusters mount the AESM socket into pods.

Wire protocol: HTTP/1.1 over the Unix socket (aiohttp):

``POST /v1/quote``  ``{"report_body": <base64 of the 384-byte SGX report body>}``
    -> ``200 {"quote": <base64 ECDSA v3 quote>}``; a malformed body -> ``400``
    ``{"error": <code>, "message": ...}``.
``GET /v1/platform`` -> ``{"node", "fmspc", "pck_certificate_sha256"}``: which
    platform this node is, so an operator can tell quotes of different nodes apart.

Simulation caveat: a real Quoting Enclave only quotes reports the CPU MACed for it
(local attestation), so nothing but a genuine enclave on that CPU gets a quote. The
simulated service quotes the report body it is given; the trust boundary it models
is the node (its PCK key never leaves the node's platform directory).
"""

from enclave_runtime.quoting.client import QuotingClient, QuotingError

__all__ = ["QuotingClient", "QuotingError"]
