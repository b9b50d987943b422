"""The Registration gRPC service the kubelet serves, and the checks it makes."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from kubetee.deviceplugin.api import deviceplugin_pb2 as pb
from kubetee.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from kubetee.deviceplugin.constants import API_VERSION, KUBELET_SOCKET_NAME
from kubetee.deviceplugin.errors import RegistrationError

logger = logging.getLogger(__name__)

SUPPORTED_VERSIONS = (API_VERSION,)

# An extended resource name: a DNS subdomain prefix, "/", and a name, as the kubelet checks.
_EXTENDED_RESOURCE = re.compile(
    r"^(?P<domain>[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)"
    r"/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


@dataclass(frozen=True, slots=True)
class PluginRegistration:
    """An accepted RegisterRequest."""

    resource: str
    endpoint: str
    pre_start_required: bool
    preferred_allocation_available: bool


def validate_registration(request: pb.RegisterRequest) -> PluginRegistration:
    """The registration, or :class:`RegistrationError` saying what is wrong with it."""
    if request.version not in SUPPORTED_VERSIONS:
        raise RegistrationError(
            f"unsupported device plugin API version {request.version!r}; "
            f"this node agent speaks {', '.join(SUPPORTED_VERSIONS)}"
        )
    match = _EXTENDED_RESOURCE.match(request.resource_name)
    domain = match["domain"] if match else ""
    if not match or domain == "kubernetes.io" or domain.endswith(".kubernetes.io"):
        raise RegistrationError(
            f"invalid resource name {request.resource_name!r}: expected an extended resource "
            "name like vendor.example/device, outside the kubernetes.io domain"
        )
    endpoint = request.endpoint
    # The endpoint is joined to the plugin dir: a bare file name keeps it inside.
    if not endpoint or "/" in endpoint or endpoint in {".", "..", KUBELET_SOCKET_NAME}:
        raise RegistrationError(
            f"invalid endpoint {endpoint!r}: expected the file name of the plugin's socket "
            "in the plugin directory"
        )
    return PluginRegistration(
        resource=request.resource_name,
        endpoint=endpoint,
        pre_start_required=request.options.pre_start_required,
        preferred_allocation_available=request.options.get_preferred_allocation_available,
    )


class RegistrationService(pb_grpc.RegistrationServicer):
    """Accepts plugin registrations and hands them to ``on_register``."""

    def __init__(self, on_register: Callable[[PluginRegistration], None]) -> None:
        self._on_register = on_register

    async def Register(
        self,
        request: pb.RegisterRequest,
        context: grpc.aio.ServicerContext[pb.RegisterRequest, pb.Empty],
    ) -> pb.Empty:
        try:
            registration = validate_registration(request)
        except RegistrationError as error:
            logger.warning("refused a plugin registration: %s", error)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        logger.info(
            "plugin registered: %s at endpoint %s", registration.resource, registration.endpoint
        )
        self._on_register(registration)
        return pb.Empty()
