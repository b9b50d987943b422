"""`helm test` of the KubeTEE chart, run in the kubetee image by the test Job.

Checks, with the standard library only, that:

1. the apiserver serves the kubetee.io/v1alpha1 API with EnclaveContainers and EPCPools
   (the CRDs are installed and established);
2. the attestation service answers over TLS that verifies against the CA the chart
   hands to runtimes, for the service's in-cluster DNS name: `/healthz`, and a KBS
   `POST /kbs/v0/auth` that returns a nonce (no state is kept for it: sessions are
   signed, a nonce is only claimed when evidence is presented).

Environment: KUBETEE_TEST_ATTESTATION_URL (skips check 2 when empty),
KUBETEE_TEST_ATTESTATION_CA (CA file), and for the apiserver the pod's service account,
or KUBETEE_TEST_APISERVER, KUBETEE_TEST_TOKEN_FILE and KUBETEE_TEST_APISERVER_CA.
Prints one line per check; exits 1 on the first failure, saying what failed.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
GROUP_VERSION = "kubetee.io/v1alpha1"
RESOURCES = ("enclavecontainers", "epcpools")
# The KBS protocol version the attestation service speaks and the extra-params key naming
# the attesting pod (tests/unit/chart/test_helm_test_script.py keeps them equal to the code).
KBS_PROTOCOL_VERSION = "0.4.0"
TIMEOUT_SECONDS = 10


class CheckFailedError(Exception):
    """One check did not pass; the message says which and why."""


def _request(
    url: str, context: ssl.SSLContext, *, token: str | None = None, body: object = None
) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    data = None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - https only
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=context) as reply:  # noqa: S310
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        raise CheckFailedError(f"{url} answered {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CheckFailedError(f"cannot reach {url}: {reason}") from None


def _apiserver() -> tuple[str, str, ssl.SSLContext]:
    url = os.environ.get("KUBETEE_TEST_APISERVER")
    if url:
        token_file = Path(os.environ["KUBETEE_TEST_TOKEN_FILE"])
        ca_file = os.environ["KUBETEE_TEST_APISERVER_CA"]
    else:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        url = f"https://{host}:{port}"
        token_file = SERVICE_ACCOUNT / "token"
        ca_file = str(SERVICE_ACCOUNT / "ca.crt")
    return url, token_file.read_text().strip(), ssl.create_default_context(cafile=ca_file)


def check_crds_served() -> str:
    url, token, context = _apiserver()
    _, discovery = _request(f"{url}/apis/{GROUP_VERSION}", context, token=token)
    served = {resource.get("name") for resource in discovery.get("resources", [])}
    missing = [name for name in RESOURCES if name not in served]
    if missing:
        raise CheckFailedError(f"{GROUP_VERSION} does not serve {', '.join(missing)}")
    return f"{GROUP_VERSION} serves {', '.join(RESOURCES)}"


def check_attestation_service(url: str, ca_file: str) -> str:
    context = ssl.create_default_context(cafile=ca_file)
    _, health = _request(f"{url}/healthz", context)
    if not isinstance(health, dict) or health.get("status") != "ok":
        raise CheckFailedError(f"{url}/healthz answered {health!r}")
    _, challenge = _request(
        f"{url}/kbs/v0/auth",
        context,
        body={"version": KBS_PROTOCOL_VERSION, "tee": "sgx", "extra-params": ""},
    )
    if not isinstance(challenge, dict) or not challenge.get("nonce"):
        raise CheckFailedError(f"{url}/kbs/v0/auth answered no nonce: {challenge!r}")
    return f"{url} answers /healthz and issues KBS nonces over verified TLS"


def main() -> int:
    checks = [check_crds_served]
    attestation_url = os.environ.get("KUBETEE_TEST_ATTESTATION_URL", "")
    if attestation_url:
        ca_file = os.environ["KUBETEE_TEST_ATTESTATION_CA"]
        checks.append(lambda: check_attestation_service(attestation_url, ca_file))
    for check in checks:
        try:
            sys.stdout.write(f"ok: {check()}\n")
        except CheckFailedError as failure:
            sys.stdout.write(f"FAILED: {failure}\n")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
