"""Generated Python stubs of the kubelet device-plugin API v1beta1.

``deviceplugin.proto`` is ours but keeps the kubelet's package, services and field
numbers, so these stubs talk to a real kubelet. Do not edit the ``*_pb2*`` files;
regenerate them with ``scripts/gen_deviceplugin.sh`` (grpcio-tools + mypy-protobuf).
"""
