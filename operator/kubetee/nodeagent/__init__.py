"""The simulated node agent: the kubelet's device manager for one KWOK node.

KWOK nodes have no kubelet, so ``kubetee node-agent`` plays the part the device
manager plays inside a kubelet: it serves ``Registration`` on ``<plugin dir>/kubelet.sock``,
dials each plugin that registers, consumes its ``ListAndWatch`` stream, and publishes
the counts in the Node's ``status.capacity`` (all devices) and ``status.allocatable``
(healthy devices), so the real scheduler places pods by them.

Modules:
    registration   the Registration gRPC service and its request checks
    plugin_client  the connection to one registered plugin (ListAndWatch, Allocate)
    node_status    publishing the counts on the Node through the Kubernetes API
    agent          the device manager tying them together
    cli            ``kubetee node-agent``

:attr:`agent.NodeAgent.plugins` keeps each plugin's client, so a pod watcher can later
call ``Allocate`` for pods bound to the node.
"""
