"""Linux actuator: ``ip route`` for path splits, tc htb + u32 for reservations and shaping.

A :class:`LinuxBinding` maps the plan's abstract names onto routers: each directed link
``u->v`` to an egress port (network namespace, device, next-hop address, rate), each node
to the prefix routed to it, each traffic class to a u32 match. Commands run through
iproute2 (``ip -n NS``, ``tc -n NS``).

* Path splits: at the OD's ingress router a (weighted multipath) route to the destination
  prefix; on every other router of a used path, a route via the path's next hop. Routing
  is per destination: a router that two used paths leave by different next hops for the
  same destination cannot be expressed (that needs source routing) and is rejected
  before anything is touched. Classes of one OD share the demand-weighted split.
* Reservations and shaping: on each egress port concerned, ``htb`` root ``1:``, parent
  ``1:1`` at the port rate, one class per reserved class (rate = reservation, ceil =
  port rate) or shaped class (rate = ceil = limit), best effort ``1:99``; u32 filters
  send each class to its htb class.

All-or-nothing: before changing anything the actuator records the routes for every
prefix and the root qdisc of every port it will touch; on any failure it restores them
(route re-created or deleted; htb removed or the previous plan's htb re-applied) and
raises ActuationError. ``rollback()`` restores the state before the last apply.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shadowcast.act.base import ApplyResult
from shadowcast.errors import ActuationError
from shadowcast.plan.base import Plan

log = logging.getLogger(__name__)

_MATCH = {
    "dport": "ip dport {} 0xffff",
    "sport": "ip sport {} 0xffff",
    "tos": "ip tos {} 0xff",
    "dst": "ip dst {}",
    "src": "ip src {}",
}


@dataclass(frozen=True, slots=True)
class Port:
    """Egress of link ``u->v`` at router ``u``."""

    netns: str
    dev: str
    via: str
    rate_mbit: float


@dataclass(frozen=True, slots=True)
class LinuxBinding:
    ports: Mapping[str, Port]  # "u->v" -> egress port at u
    prefixes: Mapping[str, str]  # node -> prefix routed to it
    classes: Mapping[str, Mapping[str, str | int]] = field(default_factory=dict)

    def port(self, u: str, v: str) -> Port:
        try:
            return self.ports[f"{u}->{v}"]
        except KeyError:
            raise ActuationError(f"linux binding has no port for link {u}->{v}") from None


Cmd = tuple[str, ...]


def _run(cmd: Cmd) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ActuationError(f"{' '.join(cmd)}: {exc}") from exc
    if out.returncode != 0:
        raise ActuationError(f"{' '.join(cmd)}: {out.stderr.strip() or out.returncode}")
    return out.stdout


def _ip(ns: str, *args: str) -> Cmd:
    return ("ip", "-n", ns, *args) if ns else ("ip", *args)


def _tc(ns: str, *args: str) -> Cmd:
    return ("tc", "-n", ns, *args) if ns else ("tc", *args)


def _htb_class(
    ns: str, dev: str, parent: str, classid: str, rate: str, ceil: str, prio: str | None = None
) -> Cmd:
    """``tc class add`` of an htb class; ``rate``/``ceil`` as tc strings (``"40.000mbit"``)."""
    args = ["parent", parent, "classid", classid, "htb", "rate", rate, "ceil", ceil]
    return _tc(ns, "class", "add", "dev", dev, *args, *(("prio", prio) if prio else ()))


class LinuxActuator:
    name = "linux"

    def __init__(self, binding: LinuxBinding) -> None:
        self.binding = binding
        self._tc_applied: dict[tuple[str, str], list[Cmd]] = {}
        self._undo: list[Cmd] | None = None
        self._undo_tc: dict[tuple[str, str], list[Cmd]] = {}
        self._last_id = ""

    # -- desired state -----------------------------------------------------------------
    def route_commands(self, plan: Plan) -> list[Cmd]:
        """``ip route replace`` commands realising the plan's splits (validated)."""
        b = self.binding
        weight: dict[tuple[str, str], dict[tuple[str, ...], float]] = {}
        for s in plan.splits:
            if s.src not in b.prefixes and s.dst not in b.prefixes:
                continue
            per = weight.setdefault((s.src, s.dst), {})
            per[s.nodes] = per.get(s.nodes, 0.0) + s.fraction * max(s.demand_mbps, 1e-9)
        hops: dict[tuple[str, str], set[str]] = {}  # (router, dst) -> next hops
        ingress: dict[tuple[str, str], dict[str, float]] = {}
        for (src, dst), per in weight.items():
            if dst not in b.prefixes:
                raise ActuationError(f"linux binding has no prefix for node {dst}")
            total = sum(per.values())
            for nodes, w in per.items():
                if w / total < 1e-3:
                    continue
                first = ingress.setdefault((src, dst), {})
                first[nodes[1]] = first.get(nodes[1], 0.0) + w / total
                for u, v in zip(nodes[1:-1], nodes[2:], strict=True):
                    hops.setdefault((u, dst), set()).add(v)
        cmds: list[Cmd] = []
        for (u, dst), nh in sorted(hops.items()):
            if (u, dst) in ingress and set(ingress[(u, dst)]) != nh:
                raise ActuationError(
                    f"router {u} would need different next hops to {dst} "
                    "for transit and for its own traffic (source routing)"
                )
            if len(nh) > 1:
                raise ActuationError(
                    f"router {u} is left towards {dst} by {sorted(nh)}: "
                    "per-destination routing cannot split transit traffic"
                )
            v = next(iter(nh))
            p = b.port(u, v)
            cmds.append(
                _ip(p.netns, "route", "replace", b.prefixes[dst], "via", p.via, "dev", p.dev)
            )
        for (u, dst), nh_w in sorted(ingress.items()):
            if len(nh_w) == 1:
                p = b.port(u, next(iter(nh_w)))
                cmds.append(
                    _ip(p.netns, "route", "replace", b.prefixes[dst], "via", p.via, "dev", p.dev)
                )
                continue
            args: list[str] = ["route", "replace", b.prefixes[dst]]
            ns = ""
            for v, w in sorted(nh_w.items()):
                p = b.port(u, v)
                ns = p.netns
                args += [
                    "nexthop",
                    "via",
                    p.via,
                    "dev",
                    p.dev,
                    "weight",
                    str(max(1, min(256, round(w * 100)))),
                ]
            cmds.append(_ip(ns, *args))
        return cmds

    def tc_commands(self, plan: Plan) -> dict[tuple[str, str], list[Cmd]]:
        """Per port (netns, dev): the htb tree for its reservations and shaping."""
        b = self.binding
        per_port: dict[tuple[str, str], list[tuple[str, float, float]]] = {}
        rates: dict[tuple[str, str], float] = {}
        for r in plan.reservations:
            for u, v in zip(r.nodes[:-1], r.nodes[1:], strict=True):
                p = b.port(u, v)
                per_port.setdefault((p.netns, p.dev), []).append((r.cls, r.mbps, p.rate_mbit))
                rates[(p.netns, p.dev)] = p.rate_mbit
        for s in plan.shaping:
            u, _, v = s.link.partition("->")
            p = b.port(u, v.split("#")[0])
            per_port.setdefault((p.netns, p.dev), []).append((s.cls, s.limit_mbps, s.limit_mbps))
            rates[(p.netns, p.dev)] = p.rate_mbit
        out: dict[tuple[str, str], list[Cmd]] = {}
        for (ns, dev), entries in sorted(per_port.items()):
            rate = rates[(ns, dev)]
            merged: dict[str, tuple[float, float]] = {}
            for cls, mbps, ceil in entries:
                old = merged.get(cls, (0.0, ceil))
                merged[cls] = (old[0] + mbps, min(old[1], ceil))
            used = sum(m for m, _ in merged.values())
            if used > rate * (1 + 1e-6):
                raise ActuationError(f"{ns}/{dev}: {used:.1f} Mbit/s reserved on {rate} Mbit/s")
            cmds: list[Cmd] = [
                _tc(
                    ns,
                    "qdisc",
                    "replace",
                    "dev",
                    dev,
                    "root",
                    "handle",
                    "1:",
                    "htb",
                    "default",
                    "99",
                ),
                _htb_class(ns, dev, "1:", "1:1", f"{rate}mbit", f"{rate}mbit"),
                _htb_class(
                    ns,
                    dev,
                    "1:1",
                    "1:99",
                    f"{max(rate - used, rate * 0.01):.3f}mbit",
                    f"{rate}mbit",
                    prio="7",
                ),
            ]
            for i, (cls, (mbps, ceil)) in enumerate(sorted(merged.items()), start=10):
                match = self.binding.classes.get(cls)
                if not match:
                    raise ActuationError(f"linux binding has no u32 match for class {cls!r}")
                cmds.append(
                    _htb_class(
                        ns,
                        dev,
                        "1:1",
                        f"1:{i}",
                        f"{max(mbps, 0.001):.3f}mbit",
                        f"{ceil:.3f}mbit",
                        prio="0",
                    )
                )
                sel: list[str] = []
                for key, val in match.items():
                    if key not in _MATCH:
                        raise ActuationError(f"class {cls!r}: unknown u32 match {key!r}")
                    sel += ["match", *_MATCH[key].format(val).split()]
                cmds.append(
                    _tc(
                        ns,
                        "filter",
                        "add",
                        "dev",
                        dev,
                        "parent",
                        "1:",
                        "protocol",
                        "ip",
                        "prio",
                        "1",
                        "u32",
                        *sel,
                        "flowid",
                        f"1:{i}",
                    )
                )
            out[(ns, dev)] = cmds
        return out

    # -- snapshot / restore ------------------------------------------------------------
    def _route_undo(self, route_cmds: Sequence[Cmd]) -> list[Cmd]:
        undo: list[Cmd] = []
        for cmd in route_cmds:
            ns = cmd[2] if cmd[1] == "-n" else ""
            prefix = cmd[cmd.index("replace") + 1]
            found = json.loads(_run(_ip(ns, "-j", "route", "show", "exact", prefix)) or "[]")
            undo.append(
                _recreate(ns, prefix, found[0]) if found else _ip(ns, "route", "del", prefix)
            )
        return undo

    def _tc_undo(self, ports: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Cmd]]:
        undo: dict[tuple[str, str], list[Cmd]] = {}
        for ns, dev in ports:
            q = json.loads(_run(_tc(ns, "-j", "qdisc", "show", "dev", dev)) or "[]")
            root = [x for x in q if x.get("root")]
            if root and root[0].get("kind") == "htb":
                prev = self._tc_applied.get((ns, dev))
                if prev is None:
                    raise ActuationError(f"{ns}/{dev}: a foreign htb is installed; not touching")
                undo[(ns, dev)] = prev
            elif root and root[0].get("kind") not in (
                "noqueue",
                "pfifo_fast",
                "fq_codel",
                "mq",
                "noop",
            ):
                raise ActuationError(
                    f"{ns}/{dev}: root qdisc {root[0].get('kind')} is not ours; not touching"
                )
            else:
                undo[(ns, dev)] = [_tc(ns, "qdisc", "del", "dev", dev, "root")]
        return undo

    def _restore(
        self, route_undo: Sequence[Cmd], tc_undo: Mapping[tuple[str, str], list[Cmd]]
    ) -> list[str]:
        errors: list[str] = []
        for cmd in route_undo:
            try:
                _run(cmd)
            except ActuationError as exc:
                if "del" not in cmd:
                    errors.append(str(exc))
        for (ns, dev), cmds in tc_undo.items():
            if cmds and "del" not in cmds[0]:
                cmds = [_tc(ns, "qdisc", "del", "dev", dev, "root"), *cmds]
            for i, cmd in enumerate(cmds):
                try:
                    _run(cmd)
                except ActuationError as exc:
                    if not (i == 0 and "del" in cmd):  # deleting an absent qdisc is fine
                        errors.append(str(exc))
        return errors

    # -- protocol ----------------------------------------------------------------------
    def apply(self, plan: Plan, *, dry_run: bool = True) -> ApplyResult:
        routes = self.route_commands(plan)
        tcs = self.tc_commands(plan)
        # Ports we configured for the previous plan but this plan does not use: clear.
        stale = [k for k in self._tc_applied if k not in tcs]
        flat = [" ".join(c) for cmds in tcs.values() for c in cmds] + [" ".join(c) for c in routes]
        if dry_run:
            return ApplyResult(
                plan.plan_id,
                self.name,
                True,
                "dry-run",
                tuple(flat),
                plan.explain(),
                "\n".join(flat),
            )
        route_undo = self._route_undo(routes)
        tc_undo = self._tc_undo([*tcs, *stale])
        done: list[str] = []
        try:
            for key, cmds in tcs.items():
                if key in self._tc_applied:  # our htb from the last plan: rebuild it
                    _run(_tc(key[0], "qdisc", "del", "dev", key[1], "root"))
                for c in cmds:
                    _run(c)
                    done.append(" ".join(c))
            for ns, dev in stale:
                _run(_tc(ns, "qdisc", "del", "dev", dev, "root"))
                done.append(f"tc -n {ns} qdisc del dev {dev} root")
            for c in routes:
                _run(c)
                done.append(" ".join(c))
        except ActuationError as exc:
            errors = self._restore(route_undo, tc_undo)
            log.warning(
                "linux apply failed, rolled back", extra={"plan": plan.plan_id, "error": str(exc)}
            )
            tail = f"; rollback errors: {errors}" if errors else ""
            raise ActuationError(
                f"plan {plan.plan_id}: {exc}; rolled back {len(done)} step(s){tail}"
            ) from exc
        prev_applied = dict(self._tc_applied)
        for key in stale:
            self._tc_applied.pop(key, None)
        self._tc_applied.update(tcs)
        self._undo = route_undo
        self._undo_tc = {k: (prev_applied.get(k) or v) for k, v in tc_undo.items()}
        self._last_id = plan.plan_id
        return ApplyResult(plan.plan_id, self.name, False, "ok", tuple(done), plan.explain())

    def rollback(self) -> ApplyResult:
        if self._undo is None:
            return ApplyResult("", self.name, False, "ok", (), "nothing to roll back")
        errors = self._restore(self._undo, self._undo_tc)
        for key, cmds in self._undo_tc.items():
            if cmds and "del" in cmds[0] and len(cmds) == 1:
                self._tc_applied.pop(key, None)
            else:
                self._tc_applied[key] = cmds
        acts = tuple(" ".join(c) for c in self._undo)
        self._undo, self._undo_tc = None, {}
        if errors:
            raise ActuationError(f"rollback of {self._last_id} incomplete: {errors}")
        return ApplyResult(self._last_id, self.name, False, "ok", acts, "restored")


def _recreate(ns: str, prefix: str, r: Mapping[str, Any]) -> Cmd:
    """An ``ip route replace`` that re-creates route ``r`` (from ``ip -j route``)."""
    args: list[str] = ["route", "replace", prefix]
    if "nexthops" in r:
        for nh in r["nexthops"]:
            args += [
                "nexthop",
                "via",
                nh["gateway"],
                "dev",
                nh["dev"],
                "weight",
                str(nh.get("weight", 1)),
            ]
    else:
        if "gateway" in r:
            args += ["via", r["gateway"]]
        if "dev" in r:
            args += ["dev", r["dev"]]
    if r.get("protocol") and r["protocol"] != "boot":
        args += ["proto", str(r["protocol"])]
    if r.get("scope") and r["scope"] != "global":
        args += ["scope", str(r["scope"])]
    if "metric" in r:
        args += ["metric", str(r["metric"])]
    if r.get("prefsrc"):
        args += ["src", str(r["prefsrc"])]
    return _ip(ns, *args)
