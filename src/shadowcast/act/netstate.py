"""Snapshot, restore and verify the kernel state the Linux actuator touches.

Routes, per (namespace, prefix): the main table's routes are saved as the kernel's own
netlink messages (``ip route save``) and restored byte for byte (``ip route restore``)
after the routes the prefix has by then are deleted one by one, so every attribute the
kernel keeps (metrics such as ``mtu``/``initcwnd`` and their locks, ``onlink``, multipath
weights and per-hop flags, ``proto``, ``scope``, ``src``, ``realm``, encapsulation, a
second route at another metric) round-trips; rebuilding ``ip route`` arguments from
``ip -j route`` cannot, as that JSON drops locks and mixes up encapsulation fields. There
is a gap of a few milliseconds between the delete and the restore.

qdiscs, per port: what the actuator re-applies (its own htb from the previous plan) or
nothing (the root qdisc deleted, the kernel's default comes back).

Every restore is verified: the normalised ``ip -d route show table all exact PREFIX`` and
``tc -d qdisc|class|filter show dev DEV`` dumps taken before the change must equal those
after the restore. A difference is returned as a failure, never hidden; ``ip route
restore`` exits 0 even when the kernel refuses a route, so the dump is the only judge.
Known case it reports: a route using a nexthop object (``nhid``), which the kernel dumps
with gateway attributes it then refuses on restore.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from shadowcast.errors import ActuationError

log = logging.getLogger(__name__)

Cmd = tuple[str, ...]
_EXPIRES = re.compile(r"\s+expires \d+sec")
_TC_COUNTERS = re.compile(r"\s+direct_packets_stat \d+")


def run(cmd: Cmd, data: bytes | None = None) -> bytes:
    """Run one iproute2 command (``data`` on its stdin, from a file: ``ip route restore``
    seeks); its stdout, or ActuationError naming the command."""
    try:
        if data is None:
            out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                                 check=False)  # fmt: skip
        else:
            with tempfile.TemporaryFile() as f:
                f.write(data)
                f.seek(0)
                out = subprocess.run(cmd, stdin=f, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ActuationError(f"{' '.join(cmd)}: {exc}") from exc
    if out.returncode != 0:
        err = out.stderr.decode(errors="replace").strip()
        raise ActuationError(f"{' '.join(cmd)}: {err or out.returncode}")
    return out.stdout


def ip(ns: str, *args: str) -> Cmd:
    return ("ip", "-n", ns, *args) if ns else ("ip", *args)


def tc(ns: str, *args: str) -> Cmd:
    return ("tc", "-n", ns, *args) if ns else ("tc", *args)


def _family(prefix: str) -> str:
    return "-6" if ":" in prefix else "-4"


def _normalise(text: str) -> str:
    """One entry per route (multipath hops stay with their route), sorted; no timers."""
    entries: list[str] = []
    for line in _EXPIRES.sub("", text).splitlines():
        if line.startswith((" ", "\t")) and entries:
            entries[-1] += "\n" + line.strip()
        elif line.strip():
            entries.append(line.strip())
    return "\n".join(sorted(entries))


def route_dump(ns: str, prefix: str) -> str:
    """Every route of ``prefix`` in every table, normalised for comparison."""
    fam = _family(prefix)
    text = run(ip(ns, fam, "-d", "route", "show", "table", "all", "exact", prefix)).decode()
    return _normalise(text)


def tc_dump(ns: str, dev: str) -> str:
    parts = []
    for what in ("qdisc", "class", "filter"):
        parts.append(run(tc(ns, "-d", what, "show", "dev", dev)).decode())
    return _TC_COUNTERS.sub("", "\n".join(parts))


@dataclass(frozen=True, slots=True)
class RouteSnapshot:
    """The routes of one prefix in one namespace before a change."""

    ns: str
    prefix: str
    saved: bytes  # ``ip route save table main exact PREFIX`` (netlink messages)
    dump: str  # normalised, all tables

    @classmethod
    def take(cls, ns: str, prefix: str) -> RouteSnapshot:
        fam = _family(prefix)
        saved = run(ip(ns, fam, "route", "save", "table", "main", "exact", prefix))
        return cls(ns, prefix, saved, route_dump(ns, prefix))

    def commands(self) -> list[str]:
        """For the audit trail: what the restore does."""
        return [f"ip -n {self.ns} route restore ({self.prefix}: {len(self.saved)} bytes)"]

    def restore(self) -> str | None:
        """Put the prefix's routes back; None when the dump matches, else what differs."""
        fam = _family(self.prefix)
        try:
            now = json.loads(
                run(ip(self.ns, fam, "-j", "route", "show", "table", "main", "exact", self.prefix))
                or b"[]"
            )
            for r in now:  # delete each by its key: table, tos, metric
                key = ["table", "main"]
                if r.get("tos") not in (None, "0", 0, "default"):
                    key += ["tos", str(r["tos"])]
                if "metric" in r:
                    key += ["metric", str(r["metric"])]
                run(ip(self.ns, fam, "route", "del", self.prefix, *key))
            run(ip(self.ns, "route", "restore"), self.saved)
        except ActuationError as exc:
            log.warning("route restore step failed", extra={"error": str(exc)})
        return self._verify()

    def _verify(self) -> str | None:
        try:
            after = route_dump(self.ns, self.prefix)
        except ActuationError as exc:
            return f"{self.ns} {self.prefix}: cannot read routes back: {exc}"
        if after == self.dump:
            return None
        return (
            f"{self.ns or 'host'} {self.prefix}: routes differ after restore: "
            f"before {self.dump!r}, after {after!r}"
        )


@dataclass(frozen=True, slots=True)
class TcSnapshot:
    """One port's qdiscs/classes/filters before a change, and how to get them back."""

    ns: str
    dev: str
    reapply: tuple[Cmd, ...]  # our htb of the previous plan; empty: the kernel default
    dump: str

    @classmethod
    def take(cls, ns: str, dev: str, reapply: Sequence[Cmd]) -> TcSnapshot:
        return cls(ns, dev, tuple(reapply), tc_dump(ns, dev))

    def commands(self) -> list[str]:
        return [" ".join(c) for c in (tc(self.ns, "qdisc", "del", "dev", self.dev, "root"),
                                      *self.reapply)]  # fmt: skip

    def restore(self) -> str | None:
        try:
            run(tc(self.ns, "qdisc", "del", "dev", self.dev, "root"))
        except ActuationError:
            pass  # nothing of ours there: the default is already back
        try:
            for cmd in self.reapply:
                run(cmd)
        except ActuationError as exc:
            log.warning("tc restore step failed", extra={"error": str(exc)})
        try:
            after = tc_dump(self.ns, self.dev)
        except ActuationError as exc:
            return f"{self.ns} {self.dev}: cannot read qdiscs back: {exc}"
        if after == self.dump:
            return None
        return (
            f"{self.ns or 'host'} {self.dev}: qdiscs differ after restore: "
            f"before {self.dump!r}, after {after!r}"
        )


def restore_all(
    routes: Sequence[RouteSnapshot], tcs: Sequence[TcSnapshot]
) -> list[str]:  # fmt: skip
    """Restore everything (each independently); the differences left, empty if exact."""
    problems = [p for s in routes if (p := s.restore()) is not None]
    problems += [p for t in tcs if (p := t.restore()) is not None]
    return problems
