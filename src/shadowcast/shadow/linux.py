"""Linux backend: a VXLAN device on each edge VTEP (iproute2), outer source port pinned.

``ip link add NAME type vxlan id VNI local A remote B dstport 4789 srcport P P+1`` makes
the kernel put every encapsulated packet on the outer 5-tuple (A, B, UDP, P, 4789), the
tuple ECMP hashes on, so the probes follow one path.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping

from shadowcast.errors import ProbeError
from shadowcast.shadow.base import TunnelSpec

log = logging.getLogger(__name__)


def _ip(ns: str | None, *args: str, check: bool = True) -> None:
    cmd = ["ip", *(("-n", ns) if ns else ()), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise ProbeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")


class LinuxVxlanBackend:
    """Creates the two ends of each tunnel in the edge hosts' namespaces."""

    def __init__(self, netns_of: Mapping[str, str | None]) -> None:
        self.netns_of = dict(netns_of)  # edge router -> namespace of its VTEP host
        self.live: dict[str, TunnelSpec] = {}

    def _end(self, spec: TunnelSpec, ns: str | None, local: str, remote: str, addr: str) -> None:
        _ip(ns, "link", "add", spec.name, "type", "vxlan", "id", str(spec.vni),
            "local", local, "remote", remote, "dstport", str(spec.dport),
            "srcport", str(spec.sport), str(spec.sport + 1), "ttl", "64")  # fmt: skip
        _ip(ns, "addr", "add", f"{addr}/30", "dev", spec.name)
        _ip(ns, "link", "set", spec.name, "up")

    def create(self, spec: TunnelSpec) -> None:
        a, b = self.netns_of[spec.key.ingress], self.netns_of[spec.key.egress]
        try:
            self._end(spec, a, spec.local, spec.remote, spec.inner_local)
            self._end(spec, b, spec.remote, spec.local, spec.inner_remote)
        except ProbeError:
            self.delete(spec)
            raise
        self.live[spec.name] = spec

    def delete(self, spec: TunnelSpec) -> None:
        for ns in (self.netns_of[spec.key.ingress], self.netns_of[spec.key.egress]):
            _ip(ns, "link", "del", spec.name, check=False)
        self.live.pop(spec.name, None)

    def names(self) -> list[str]:
        return sorted(self.live)
