"""Every configured hub by host name: the `endpoints.HubDirectory` DPS assigns devices through."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from emulator.hub.device_events import LifecycleEvent
from emulator.hub.endpoint import Hub
from emulator.hub.presence import PresencePolicy
from emulator.hub.registry import UnknownHub
from emulator.hub.twin import TwinDocument

__all__ = ["Hubs"]


class Hubs:
    """Every configured hub by host name (case-insensitive): the `ports.HubDirectory`."""

    def __init__(
        self,
        names: Sequence[str],
        *,
        clock: Callable[[], float],
        on_event: Callable[[LifecycleEvent], None] | None = None,
        presence: PresencePolicy | None = None,
    ) -> None:
        self._hubs = {
            name.lower(): Hub(name, clock=clock, on_event=on_event, presence=presence)
            for name in names
        }
        self._clock = clock

    def hub(self, name: str) -> Hub:
        """The hub with this host name; raises UnknownHub."""
        hub = self._hubs.get(name.lower())
        if hub is None:
            raise UnknownHub(f"hub {name!r} is not configured")
        return hub

    def __iter__(self) -> Iterator[Hub]:
        return iter(self._hubs.values())

    def report_connections(self, now: float) -> int:
        """Emit every hub's connection snapshot due at `now`; how many events."""
        return sum(hub.report_connections(now) for hub in self._hubs.values())

    # -- ports.HubDirectory ---------------------------------------------------------------------

    def hub_names(self) -> Sequence[str]:
        """Host names of the hubs, as configured."""
        return [hub.name for hub in self._hubs.values()]

    def upsert_device(
        self,
        hub: str,
        device_id: str,
        *,
        primary_key: str,
        secondary_key: str,
        twin: TwinDocument | None,
    ) -> None:
        """Create or update an enabled SAS device in `hub`."""
        self.hub(hub).upsert_device(
            device_id,
            primary_key=primary_key,
            secondary_key=secondary_key,
            twin=twin,
            now=self._clock(),
        )

    def device_twin(self, hub: str, device_id: str) -> TwinDocument | None:
        """The device's twin in `hub`, or None."""
        return self.hub(hub).twin(device_id)

    def delete_device(self, hub: str, device_id: str) -> None:
        """Remove a device from `hub` and drop its connection."""
        self.hub(hub).delete_device(device_id, now=self._clock())
