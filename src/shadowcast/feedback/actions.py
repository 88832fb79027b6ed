"""Every applied action judged by its effect: the link loads the plan expected after it,
against the loads realised when its target steps arrive.

When the plan stage applies a plan at ``issued_s`` the service hands :class:`ActionJudge`
the link loads it now predicts under the new routing (``predicted[link, j]`` Mbit/s for the
step starting ``issued_s + j * step``: the recalibrated (class, OD) forecast mapped through
the routing just installed). For each of the ledger's horizons (``15m`` -> 3 steps) the
target step's prediction is held; when that step is measured its per-link load (the
measured demand under the routing in force) is joined with it: one row per (action,
horizon, link) in the store's ``action_outcomes``. A row is ``superseded`` when the routing
changed again between the action and its target (another action, a rollback): its realised
load is no longer the action's alone.

:func:`summarise` turns those rows into one figure set per (action, horizon)::

    mlu_predicted = max_e predicted_e / capacity_e     mlu_realised likewise
    mlu_error     = mlu_predicted - mlu_realised       (> 0: the plan was pessimistic)
    load_nmae     = sum_e |predicted_e - realised_e| / sum_e realised_e
    max_util_error = max_e |predicted_e - realised_e| / capacity_e

The pending predictions are part of the service's feedback state (``state()``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from shadowcast.records import F64
from shadowcast.store.schema import ACTION_OUTCOMES_SCHEMA


@dataclass(frozen=True, slots=True)
class _Pending:
    issued_s: int
    plan_id: str
    horizon_s: int
    predicted: F64  # [n_links] Mbit/s
    routing_version: int


class ActionJudge:
    """Predicted post-action link loads held until their targets are measured."""

    def __init__(
        self,
        link_names: Sequence[str],
        capacity_mbps: F64,
        horizons: Mapping[str, int],
        step_s: int,
        max_pending: int = 1000,
    ) -> None:
        self.link_names = list(link_names)
        self.capacity = np.asarray(capacity_mbps, dtype=np.float64)
        self.horizons = dict(horizons)
        self.step_s = int(step_s)
        self.max_pending = max_pending
        self._pending: dict[int, list[_Pending]] = {}
        self._rows: list[pa.Table] = []
        self.judged = 0
        self.dropped = 0

    def applied(self, issued_s: int, plan_id: str, predicted: F64, routing_version: int) -> None:
        """A plan applied at ``issued_s``; ``predicted[n_links, H]`` the loads expected."""
        pred = np.asarray(predicted, dtype=np.float64)
        if pred.ndim != 2 or pred.shape[0] != len(self.link_names):
            return
        for h in sorted(set(self.horizons.values())):
            if h > pred.shape[1]:
                continue
            target = int(issued_s) + (h - 1) * self.step_s
            self._pending.setdefault(target, []).append(
                _Pending(int(issued_s), plan_id, h * self.step_s, pred[:, h - 1].copy(),
                         int(routing_version))
            )  # fmt: skip
        if len(self._pending) > self.max_pending:  # targets that never came (gaps)
            for k in sorted(self._pending)[: len(self._pending) // 2]:
                self.dropped += len(self._pending.pop(k))

    def observe(self, t_s: int, load: F64, routing_version: int) -> None:
        """The step starting ``t_s`` measured: ``load[n_links]`` Mbit/s under the routing
        in force (``routing_version``)."""
        due = self._pending.pop(int(t_s), [])
        if not due:
            return
        real = np.asarray(load, dtype=np.float64)
        n = len(self.link_names)
        for p in due:
            self._rows.append(
                pa.table(
                    {
                        "time": _ts([t_s] * n),
                        "issued": _ts([p.issued_s] * n),
                        "plan_id": [p.plan_id] * n,
                        "horizon_s": pa.array([p.horizon_s] * n, pa.int64()),
                        "link": self.link_names,
                        "predicted_mbps": pa.array(p.predicted, pa.float64()),
                        "realised_mbps": pa.array(real, pa.float64()),
                        "capacity_mbps": pa.array(self.capacity, pa.float64()),
                        "superseded": pa.array(
                            [int(p.routing_version != int(routing_version))] * n, pa.int64()
                        ),
                    },
                    schema=ACTION_OUTCOMES_SCHEMA,
                )
            )
        self.judged += len(due)

    @property
    def pending(self) -> int:
        return sum(len(v) for v in self._pending.values())

    def take_table(self) -> pa.Table | None:
        rows, self._rows = self._rows, []
        return pa.concat_tables(rows) if rows else None

    def state(self) -> dict[str, Any]:
        return {"links": list(self.link_names), "pending": dict(self._pending)}

    def load_state(self, st: Mapping[str, Any]) -> bool:
        if st.get("links") != self.link_names:
            return False
        self._pending = {int(k): list(v) for k, v in dict(st.get("pending", {})).items()}
        return True


def _ts(values: Sequence[int]) -> pa.Array:
    ms = pa.array([int(v) * 1000 for v in values], pa.int64())
    return ms.cast(ACTION_OUTCOMES_SCHEMA.field("time").type)


def summarise(table: pa.Table) -> list[dict[str, Any]]:
    """One row per (action, horizon) from ``action_outcomes`` rows (module docstring),
    newest action first."""
    if table.num_rows == 0:
        return []
    issued = table.column("issued").cast(pa.int64()).to_numpy() // 1000
    horizon = table.column("horizon_s").to_numpy()
    plan = np.asarray(table.column("plan_id").to_pylist(), dtype=object)
    pred = table.column("predicted_mbps").to_numpy()
    real = table.column("realised_mbps").to_numpy()
    cap = np.maximum(table.column("capacity_mbps").to_numpy(), 1e-12)
    sup = table.column("superseded").to_numpy()
    target = table.column("time").cast(pa.int64()).to_numpy() // 1000
    keys = sorted({(int(i), str(p), int(h)) for i, p, h in zip(issued, plan, horizon, strict=True)},
                  key=lambda k: (-k[0], k[1], k[2]))  # fmt: skip
    out = []
    for i, p, h in keys:
        m = (issued == i) & (plan == p) & (horizon == h)
        pu, ru = pred[m] / cap[m], real[m] / cap[m]
        total = float(np.abs(real[m]).sum())
        out.append(
            {
                "issued_s": i,
                "target_s": int(target[m][0]),
                "plan_id": p,
                "horizon_s": h,
                "links": int(m.sum()),
                "mlu_predicted": round(float(pu.max()), 4),
                "mlu_realised": round(float(ru.max()), 4),
                "mlu_error": round(float(pu.max() - ru.max()), 4),
                "load_nmae": round(float(np.abs(pred[m] - real[m]).sum()) / total, 4)
                if total
                else None,
                "max_util_error": round(float(np.abs(pu - ru).max()), 4),
                "superseded": bool(sup[m].any()),
            }
        )
    return out
