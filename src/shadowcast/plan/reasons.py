"""The plan's records from a chosen split: the splits themselves, reservations, the
changes against the state in force with the reason an operator reads, and the predicted
probability of overload per link."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr

from shadowcast.plan.base import Change, PathSplit, Reservation
from shadowcast.plan.paths import PathSet
from shadowcast.records import F64, Topology


def overload_probability(
    paths: PathSet,
    cap: F64,
    split: F64,
    means: Sequence[F64],
    sigmas: Sequence[F64],
    step_s: int,
    issued: np.datetime64,
) -> tuple[F64, list[str]]:
    """P(load >= capacity) per link at its worst horizon step (normal approx., independent
    ODs; per class ``means[c]``, ``sigmas[c]`` are ``[n_od, h]``), and that step's time."""
    inc = paths.incidence()
    mean = sum(inc @ (m[paths.path_od] * split[c][:, None]) for c, m in enumerate(means))
    var = sum(inc @ ((sd[paths.path_od] * split[c][:, None]) ** 2) for c, sd in enumerate(sigmas))
    m, sd = np.asarray(mean), np.sqrt(np.asarray(var))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (cap[:, None] - m) / sd, np.where(m >= cap[:, None], -np.inf, np.inf))
    p = ndtr(-z)  # [E, h]
    worst = np.argmax(p + 1e-12 * m, axis=1)
    at = [str(issued + np.timedelta64(int((w + 1) * step_s), "s"))[11:16] for w in worst]
    return p[np.arange(len(cap)), worst], at


def _via(nodes: tuple[str, ...]) -> str:
    return "-".join(nodes[1:-1]) if len(nodes) > 2 else "direct"


def changes(
    paths: PathSet,
    topology: Topology,
    names: Sequence[str],
    cur: F64,
    new: F64,
    util_cur: F64,
    p_over: F64,
    peak_at: list[str],
    link_names: list[str],
) -> tuple[Change, ...]:
    out: list[Change] = []
    for c, k in np.argwhere(np.add.reduceat(np.abs(new - cur), paths.od_start[:-1], axis=1) > 2e-3):
        sl = range(int(paths.od_start[k]), int(paths.od_start[k + 1]))
        gain = max(sl, key=lambda p: new[c, p] - cur[c, p])
        loss = [p for p in sl if cur[c, p] - new[c, p] > 1e-3]
        hot_links = {e for p in loss for e in paths.paths[p]} - set(paths.paths[gain])
        s, d = paths.od_pairs[k]
        nodes = paths.nodes_of(gain, topology)
        pct = 100 * (new[c, gain] - cur[c, gain])
        why = "spreading load"
        if hot_links:
            e = max(hot_links, key=lambda i: util_cur[i])
            a, b = link_names[e].split("->")[:2]
            why = (
                f"{a}-{b.split('#')[0]} predicted {util_cur[e]:.0%} at {peak_at[e]}, "
                f"p(>=100 %) = {p_over[e]:.2f}"
            )
        reason = f"move {pct:.0f} % of {names[c]} {s}->{d} to the {_via(nodes)} path: {why}"
        for p in sl:
            if abs(new[c, p] - cur[c, p]) > 1e-3:
                out.append(
                    Change(
                        names[c],
                        s,
                        d,
                        paths.nodes_of(p, topology),
                        float(cur[c, p]),
                        float(new[c, p]),
                        reason,
                    )
                )
    return tuple(out)


def splits(
    paths: PathSet,
    topology: Topology,
    names: Sequence[str],
    specs: Sequence[str],
    reserve: Sequence[bool],
    split: F64,
    demand: F64,
    step_s: int,
    horizon: int,
) -> tuple[tuple[PathSplit, ...], tuple[Reservation, ...]]:
    splits: list[PathSplit] = []
    res: list[Reservation] = []
    for c, p in np.argwhere(split > 1e-6):
        k = int(paths.path_od[p])
        s, d = paths.od_pairs[k]
        nodes = paths.nodes_of(int(p), topology)
        frac = float(split[c, p])
        splits.append(
            PathSplit(
                names[c],
                s,
                d,
                paths.paths[p],
                nodes,
                frac,
                float(demand[c, k]),
                float(paths.latency_ms[p]),
            )
        )
        mbps = frac * float(demand[c, k])
        if reserve[c] and mbps > 0:
            res.append(
                Reservation(
                    names[c],
                    s,
                    d,
                    nodes,
                    paths.paths[p],
                    mbps,
                    specs[c],
                    f"reserve {mbps:.0f} Mbit/s for {names[c]} {s}->{d} on "
                    f"the {_via(nodes)} path ({specs[c]} over the next "
                    f"{horizon * step_s // 60} min)",
                )
            )
    # Fractions below the threshold were dropped: renormalise the kept ones.
    totals: dict[tuple[str, str, str], float] = {}
    for sp_ in splits:
        totals[(sp_.cls, sp_.src, sp_.dst)] = (
            totals.get((sp_.cls, sp_.src, sp_.dst), 0) + sp_.fraction
        )
    splits = [
        PathSplit(
            x.cls,
            x.src,
            x.dst,
            x.links,
            x.nodes,
            x.fraction / totals[(x.cls, x.src, x.dst)],
            x.demand_mbps,
            x.latency_ms,
        )
        for x in splits
    ]
    return tuple(splits), tuple(res)
