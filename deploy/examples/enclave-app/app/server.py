"""The example workload: a small HTTP service that uses its secret inside the enclave.

The enclave runtime starts it only after the enclave passed attestation, with the
database password in $KUBETEE_SECRETS_DIR/db/password, a directory private to the
enclave's processes. It serves the password's SHA-256 (never the value) at GET /, so
anyone can check which secret the measured program received.

Port 8080; when 8080 is taken (several replicas on one machine, as on the local
cluster), a free port on 127.0.0.1. The address is printed at start.
"""

import hashlib
import json
import os
import pathlib
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = 8080


def secret_digest() -> str | None:
    directory = os.environ.get("KUBETEE_SECRETS_DIR")
    if not directory:
        return None
    return hashlib.sha256(pathlib.Path(directory, "db", "password").read_bytes()).hexdigest()


def main() -> None:
    body = json.dumps({"secretSha256": secret_digest()}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path in {"/", "/healthz"}
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if self.path == "/" else b"{}")

        def log_message(self, *args: object) -> None:
            pass

    try:
        server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)  # noqa: S104  # the pod's IP
    except OSError:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = server.server_address[:2]
    state = "with its secret" if secret_digest() else "without a secret (not attested)"
    sys.stderr.write(f"serving {state} on http://{host}:{port}/\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
