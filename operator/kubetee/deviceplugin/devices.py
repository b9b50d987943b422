"""A resource's devices and their health, with a watch that wakes on every change.

One :class:`DevicePool` per extended resource. Devices are numbered from 0 and named
``<prefix>-<index>``; a simulated fault marks the highest-numbered ones unhealthy, so
the healthy devices stay a contiguous run from 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from kubetee.deviceplugin.constants import HEALTHY, UNHEALTHY
from kubetee.deviceplugin.errors import UnhealthyDeviceError, UnknownDeviceError


@dataclass(frozen=True, slots=True)
class DeviceState:
    """One advertised device as ListAndWatch reports it."""

    id: str
    healthy: bool

    @property
    def health(self) -> str:
        return HEALTHY if self.healthy else UNHEALTHY


class DevicePool:
    """The devices of one resource; health changes wake every watcher at once."""

    def __init__(self, resource: str, prefix: str, count: int) -> None:
        self.resource = resource
        self._ids = [f"{prefix}-{index}" for index in range(count)]
        self._index = {device_id: index for index, device_id in enumerate(self._ids)}
        self._unhealthy_count = 0
        self._generation = 0
        self._closed = False
        self._changed = asyncio.Condition()

    @property
    def size(self) -> int:
        return len(self._ids)

    @property
    def healthy_count(self) -> int:
        return self.size - self._unhealthy_count

    def snapshot(self) -> list[DeviceState]:
        healthy_below = self.healthy_count
        return [
            DeviceState(device_id, index < healthy_below)
            for index, device_id in enumerate(self._ids)
        ]

    def index_of(self, device_id: str) -> int:
        """The device's number, or :class:`UnknownDeviceError`."""
        try:
            return self._index[device_id]
        except KeyError:
            raise UnknownDeviceError(
                f"{self.resource}: unknown device {device_id!r}; this plugin advertises "
                f"{self._ids[0]} .. {self._ids[-1]}"
            ) from None

    def check_usable(self, device_ids: list[str]) -> None:
        """Raise unless every device is known and healthy (unknown IDs are reported first)."""
        indexes = [self.index_of(device_id) for device_id in device_ids]
        unhealthy = [self._ids[i] for i in indexes if i >= self.healthy_count]
        if unhealthy:
            raise UnhealthyDeviceError(
                f"{self.resource}: device(s) {', '.join(unhealthy)} are unhealthy "
                "(simulated fault); the kubelet should pick healthy ones"
            )

    async def set_unhealthy_count(self, count: int) -> bool:
        """Mark the ``count`` highest-numbered devices unhealthy, the rest healthy.

        ``count`` is clamped to the pool size. Returns whether anything changed; if so,
        watchers wake at once.
        """
        count = max(0, min(count, self.size))
        if count == self._unhealthy_count:
            return False
        async with self._changed:
            self._unhealthy_count = count
            self._generation += 1
            self._changed.notify_all()
        return True

    async def close(self) -> None:
        """End every watch, so open ListAndWatch streams finish instead of being cut off."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    async def watch(self) -> AsyncIterator[list[DeviceState]]:
        """Yield the device list now, then again after every change, until closed."""
        seen = -1
        while True:
            async with self._changed:
                while self._generation == seen and not self._closed:
                    await self._changed.wait()
                if self._closed:
                    return
                seen = self._generation
                devices = self.snapshot()
            yield devices
