#!/usr/bin/env bash
# Regenerate the Python stubs of the kubelet device-plugin API (v1beta1) from
# operator/kubetee/deviceplugin/api/deviceplugin.proto, with grpcio-tools and
# mypy-protobuf (both in the dev extra). Run from anywhere; commit the result.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
bin="$(dirname "$python")"
cd "$root/operator"
# -I operator makes the generated imports read `from kubetee.deviceplugin.api import ...`.
PATH="$bin:$PATH" "$python" -m grpc_tools.protoc -I . \
    --python_out=. --grpc_python_out=. \
    --mypy_out=. --mypy_grpc_out=. \
    kubetee/deviceplugin/api/deviceplugin.proto
