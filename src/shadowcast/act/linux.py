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

All-or-nothing: before changing anything the actuator snapshots the routes of every
prefix and the qdiscs of every port it will touch (:mod:`shadowcast.act.netstate`: the
kernel's own route messages, restored byte for byte; htb removed or the previous plan's
htb re-applied); on any failure it restores them and raises ActuationError. Every restore
is verified against the snapshot's dumps: a difference raises RollbackError (the state is
NOT what it was), never a success. ``rollback()`` restores the state before the last apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shadowcast.act.base import ApplyResult
from shadowcast.act.netstate import Cmd, RouteSnapshot, TcSnapshot, restore_all
from shadowcast.act.netstate import ip as _ip
from shadowcast.act.netstate import run as _run_bytes
from shadowcast.act.netstate import tc as _tc
from shadowcast.errors import ActuationError, RollbackError
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


def _run(cmd: Cmd) -> str:
    return _run_bytes(cmd).decode()


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
        self._undo: list[RouteSnapshot] | None = None
        self._undo_tc: list[TcSnapshot] = []
        self._prev_applied: dict[tuple[str, str], list[Cmd] | None] = {}
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
    def _route_snapshots(self, route_cmds: Sequence[Cmd]) -> list[RouteSnapshot]:
        keys: dict[tuple[str, str], None] = {}
        for cmd in route_cmds:
            ns = cmd[2] if cmd[1] == "-n" else ""
            keys[(ns, cmd[cmd.index("replace") + 1])] = None
        return [RouteSnapshot.take(ns, prefix) for ns, prefix in keys]

    def _tc_snapshots(self, ports: Sequence[tuple[str, str]]) -> list[TcSnapshot]:
        snaps: list[TcSnapshot] = []
        for ns, dev in ports:
            q = json.loads(_run(_tc(ns, "-j", "qdisc", "show", "dev", dev)) or "[]")
            root = [x for x in q if x.get("root")]
            if root and root[0].get("kind") == "htb":
                prev = self._tc_applied.get((ns, dev))
                if prev is None:
                    raise ActuationError(f"{ns}/{dev}: a foreign htb is installed; not touching")
                snaps.append(TcSnapshot.take(ns, dev, prev))
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
                snaps.append(TcSnapshot.take(ns, dev, ()))
        return snaps

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
        route_snaps = self._route_snapshots(routes)
        tc_snaps = self._tc_snapshots([*tcs, *stale])
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
            problems = restore_all(route_snaps, tc_snaps)
            if problems:
                log.error(
                    "linux apply failed and the rollback is incomplete",
                    extra={"plan": plan.plan_id, "error": str(exc), "left": problems},
                )
                raise RollbackError(
                    f"plan {plan.plan_id}: {exc}; rollback FAILED after {len(done)} step(s), "
                    f"state differs: {'; '.join(problems)}"
                ) from exc
            log.warning(
                "linux apply failed, rolled back", extra={"plan": plan.plan_id, "error": str(exc)}
            )
            raise ActuationError(
                f"plan {plan.plan_id}: {exc}; rolled back {len(done)} step(s), state verified"
            ) from exc
        self._prev_applied = {k: self._tc_applied.get(k) for k in (*tcs, *stale)}
        for key in stale:
            self._tc_applied.pop(key, None)
        self._tc_applied.update(tcs)
        self._undo = route_snaps
        self._undo_tc = tc_snaps
        self._last_id = plan.plan_id
        return ApplyResult(plan.plan_id, self.name, False, "ok", tuple(done), plan.explain())

    def rollback(self) -> ApplyResult:
        if self._undo is None:
            return ApplyResult("", self.name, False, "ok", (), "nothing to roll back")
        problems = restore_all(self._undo, self._undo_tc)
        for key, prev in self._prev_applied.items():
            if prev is None:
                self._tc_applied.pop(key, None)
            else:
                self._tc_applied[key] = prev
        acts = tuple(c for r in self._undo for c in r.commands())
        acts += tuple(c for t in self._undo_tc for c in t.commands())
        self._undo, self._undo_tc, self._prev_applied = None, [], {}
        if problems:
            raise RollbackError(
                f"rollback of {self._last_id} FAILED, state differs: {'; '.join(problems)}"
            )
        return ApplyResult(self._last_id, self.name, False, "ok", acts, "restored, verified")
