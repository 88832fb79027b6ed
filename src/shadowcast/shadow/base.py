"""The shadow stage's boundary: what a tunnel is, and the backend that builds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

VXLAN_PORT = 4789


@dataclass(frozen=True, slots=True)
class NewPathEvent:
    """The profiler saw ``application`` take ``path`` (routers, ingress first)."""

    application: str
    ingress: str
    egress: str
    path: tuple[str, ...]
    traffic_class: str = "default"
    sport: int | None = None  # the application's outer source port, when known


@dataclass(frozen=True, slots=True)
class TunnelKey:
    ingress: str
    egress: str
    path: tuple[str, ...]
    traffic_class: str

    @classmethod
    def of(cls, ev: NewPathEvent) -> TunnelKey:
        return cls(ev.ingress, ev.egress, tuple(ev.path), ev.traffic_class)

    def label(self) -> str:
        return f"{'>'.join(self.path)}/{self.traffic_class}"


@dataclass(frozen=True, slots=True)
class TunnelSpec:
    """One VXLAN overlay between two edge VTEPs with a pinned outer source port."""

    name: str  # device name on both edges (<= 15 characters)
    vni: int
    key: TunnelKey
    local: str  # ingress VTEP underlay address
    remote: str  # egress VTEP underlay address
    sport: int  # outer UDP source port (srcport sport sport+1)
    inner_local: str  # overlay address on the ingress edge (/30)
    inner_remote: str  # overlay address on the egress edge
    dport: int = VXLAN_PORT


class TunnelBackend(Protocol):
    """Builds and removes tunnels; the manager owns every decision."""

    def create(self, spec: TunnelSpec) -> None: ...

    def delete(self, spec: TunnelSpec) -> None: ...

    def names(self) -> list[str]: ...
