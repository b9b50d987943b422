"""How fast a device-health change reaches a ListAndWatch client, against a gRPC round trip.

Runs ``DevicePlugin`` in-process on a temporary Unix socket (128 MiB of EPC, as the local
cluster advertises) and, in the same run, measures:

- ``push_ms``: ``apply_faults`` -> the next ListAndWatch message received by a client
  (the streaming path alone, one 128-device message per change);
- ``fault_file_ms``: ``kubetee device-plugin fault``'s control file written -> that message
  (adds the plugin's poll of its dir, every 0.2 s; each write here follows a poll at
  once, so this is the worst case, a whole poll interval);
- ``unary_rtt_ms``: a GetDevicePluginOptions round trip on the same socket, the baseline.

Prints one JSON line with medians and p95s and ``push_vs_rtt`` (median push / median RTT).
Goal: a pushed change costs under 5 round trips, and the fault file shows within 0.5 s.

    .venv/bin/python benchmarks/deviceplugin_health_latency.py [--changes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from kubetee.deviceplugin.api import deviceplugin_pb2 as pb
from kubetee.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from kubetee.deviceplugin.constants import FAULT_FILE_NAME
from kubetee.deviceplugin.faults import Faults, write_faults
from kubetee.deviceplugin.plugin import DevicePlugin
from kubetee.deviceplugin.settings import DevicePluginSettings

EPC_MIB = 128


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median": round(statistics.median(ordered) * 1000, 3),
        "p95": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 3),
    }


async def _measure(directory: Path, changes: int) -> dict[str, object]:
    settings = DevicePluginSettings(node_name="bench", plugin_dir=directory, epc_mib=EPC_MIB)
    plugin = DevicePlugin(settings)
    stop = asyncio.Event()
    running = asyncio.create_task(plugin.run(stop))
    async with grpc.aio.insecure_channel(f"unix:{plugin.socket_paths[0]}") as channel:
        stub = pb_grpc.DevicePluginStub(channel)
        # wait_for_ready: the plugin may not be listening yet.
        stream = aiter(stub.ListAndWatch(pb.Empty(), wait_for_ready=True))
        await anext(stream)

        rtt = []
        for _ in range(changes):
            start = time.perf_counter()
            await stub.GetDevicePluginOptions(pb.Empty())
            rtt.append(time.perf_counter() - start)

        push = []
        for i in range(changes):
            start = time.perf_counter()
            await plugin.apply_faults(Faults(unhealthy_mib=(i % 2) + 1))
            await anext(stream)
            push.append(time.perf_counter() - start)

        fault_file = []
        for i in range(max(10, changes // 10)):
            start = time.perf_counter()
            write_faults(directory / FAULT_FILE_NAME, Faults(unhealthy_mib=10 + i % 2))
            await anext(stream)
            fault_file.append(time.perf_counter() - start)
    stop.set()
    await running
    push_ms, rtt_ms = _summary(push), _summary(rtt)
    return {
        "benchmark": "deviceplugin_health_latency",
        "epc_devices": EPC_MIB,
        "changes": changes,
        "push_ms": push_ms,
        "fault_file_ms": _summary(fault_file),
        "unary_rtt_ms": rtt_ms,
        "push_vs_rtt": round(push_ms["median"] / rtt_ms["median"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="kt-bench-", dir="/tmp"))
    try:
        result = asyncio.run(_measure(directory, args.changes))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
