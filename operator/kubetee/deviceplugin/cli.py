"""``kubetee device-plugin``: serve the EPC device plugin; ``... fault``: simulate a fault.

Examples::

    kubetee device-plugin --node-name node-1 --plugin-dir /tmp/dp1 --epc-mib 128 --enclaves 16
    kubetee device-plugin fault --plugin-dir /tmp/dp1 --unhealthy-mib 32
    kubetee device-plugin fault --plugin-dir /tmp/dp1 --clear
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from kubetee.deviceplugin.constants import DEFAULT_PLUGIN_DIR, FAULT_FILE_NAME
from kubetee.deviceplugin.errors import ConfigurationError, SocketError
from kubetee.deviceplugin.faults import NO_FAULTS, Faults, write_faults
from kubetee.deviceplugin.lifecycle import run_until_terminated
from kubetee.deviceplugin.logs import configure_logging
from kubetee.deviceplugin.plugin import DevicePlugin
from kubetee.deviceplugin.settings import DevicePluginSettings, load_settings
from kubetee.metrics import start_metrics_server
from kubetee.metrics.node import DevicePluginCollector

PROG = "kubetee device-plugin"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "device-plugin",
        help="serve the EPC device plugin (kubelet device-plugin API v1beta1)",
        description="Advertise kubetee.io/epc (1 device = 1 MiB of EPC) and kubetee.io/enclave "
        "(1 device = 1 enclave slot) to the kubelet over its device-plugin gRPC API. Runs until "
        "SIGTERM. Every flag can also be set as KUBETEE_<FLAG> in the environment.",
    )
    parser.add_argument("--node-name", help="Node this plugin serves (env KUBETEE_NODE_NAME)")
    parser.add_argument(
        "--plugin-dir",
        type=Path,
        help=f"kubelet device-plugin directory (default {DEFAULT_PLUGIN_DIR})",
    )
    parser.add_argument("--epc-mib", type=int, help="EPC to advertise, in MiB (default 128)")
    parser.add_argument("--enclaves", type=int, help="enclave slots to advertise (default 16)")
    parser.add_argument(
        "--quoting-socket",
        type=Path,
        help="Unix socket of the node's quoting service, handed to enclaves by Allocate",
    )
    parser.add_argument("--log-format", choices=["json", "text"], help="default text")
    parser.add_argument(
        "--metrics-port", type=int, help="port of Prometheus /metrics (default 9092; 0: off)"
    )
    parser.set_defaults(func=run_plugin)

    actions = parser.add_subparsers(
        dest="action",
        metavar="fault",
        title="actions",
        description="Without an action the plugin is served.",
    )
    fault = actions.add_parser(
        "fault",
        help="simulate a hardware fault in the plugin serving --plugin-dir",
        description=f"Write {FAULT_FILE_NAME} in the plugin dir; the running plugin marks that "
        "many devices (the highest-numbered) unhealthy and tells the kubelet at once.",
    )
    # SUPPRESS keeps a --plugin-dir given before "fault" from being overwritten by a default.
    fault.add_argument(
        "--plugin-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="plugin directory of the running plugin (env KUBETEE_PLUGIN_DIR)",
    )
    fault.add_argument("--unhealthy-mib", type=int, default=0, help="EPC MiB to mark unhealthy")
    fault.add_argument("--unhealthy-enclaves", type=int, default=0, help="enclave slots to mark")
    fault.add_argument("--clear", action="store_true", help="make every device healthy again")
    fault.set_defaults(func=run_fault)


def _fail(message: str, code: int = 2) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


def run_plugin(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(
            node_name=args.node_name,
            plugin_dir=args.plugin_dir,
            epc_mib=args.epc_mib,
            enclaves=args.enclaves,
            quoting_socket=args.quoting_socket,
            log_format=args.log_format,
            metrics_port=args.metrics_port,
        )
    except ConfigurationError as error:
        return _fail(str(error))
    configure_logging(settings.log_format)
    try:
        asyncio.run(serve(settings))
    except SocketError as error:
        return _fail(str(error), code=1)
    except OSError as error:
        return _fail(f"cannot serve in {settings.plugin_dir}: {error}", code=1)
    return 0


async def serve(settings: DevicePluginSettings) -> None:
    plugin = DevicePlugin(settings)
    if settings.metrics_port:
        start_metrics_server(
            "device-plugin",
            settings.metrics_port,
            collectors=(DevicePluginCollector(settings.node_name, lambda: plugin.pools),),
        )
    await run_until_terminated(plugin.run)


def run_fault(args: argparse.Namespace) -> int:
    if args.unhealthy_mib < 0 or args.unhealthy_enclaves < 0:
        return _fail("--unhealthy-mib and --unhealthy-enclaves must be >= 0")
    plugin_dir = args.plugin_dir or Path(os.environ.get("KUBETEE_PLUGIN_DIR", DEFAULT_PLUGIN_DIR))
    faults = NO_FAULTS if args.clear else Faults(args.unhealthy_mib, args.unhealthy_enclaves)
    try:
        write_faults(plugin_dir / FAULT_FILE_NAME, faults)
    except OSError as error:
        return _fail(f"cannot write the fault file in {plugin_dir}: {error}", code=1)
    sys.stdout.write(f"{plugin_dir / FAULT_FILE_NAME}: {json.dumps(faults.to_json())}\n")
    return 0
