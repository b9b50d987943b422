"""Errors of the device plugin and the node agent.

Hierarchy::

    DevicePluginError
    ├── ConfigurationError        a flag or env value is invalid; says which
    ├── AllocationError           a device request the plugin refuses
    │   ├── UnknownDeviceError    a device ID it never advertised (gRPC INVALID_ARGUMENT)
    │   └── UnhealthyDeviceError  a device currently unhealthy (gRPC FAILED_PRECONDITION)
    ├── RegistrationError         a RegisterRequest was refused (by the kubelet or the agent)
    ├── SocketError               a Unix socket cannot be served (path too long, dir not writable)
    └── FaultFileError            the simulated-fault control file is unreadable or invalid
"""


class DevicePluginError(Exception):
    """Base of all device-plugin errors; the message is meant for the operator."""


class ConfigurationError(DevicePluginError):
    """A flag or environment value is invalid."""


class AllocationError(DevicePluginError):
    """The plugin refuses to allocate or prepare the requested devices."""


class UnknownDeviceError(AllocationError):
    """A requested device ID was never advertised by this plugin."""


class UnhealthyDeviceError(AllocationError):
    """A requested device is currently unhealthy."""


class RegistrationError(DevicePluginError):
    """A device plugin registration was refused."""


class SocketError(DevicePluginError):
    """A Unix socket cannot be listened on."""


class FaultFileError(DevicePluginError):
    """The simulated-fault control file cannot be used."""
