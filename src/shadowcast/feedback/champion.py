"""Champion and challengers judged on the same realised values: who should forecast.

The ledger scores every forecast issued, the champion's and every challenger's in shadow,
against the same realised values and hands one row per (target step, kind, model,
horizon) to the store's ``accuracy`` table. :class:`Referee` reads those rows (the OD
series only: the links are the champion's alone), keeps each model's absolute errors and
absolute actuals per target step over the last ``window_steps`` steps, and judges::

    score(model) = sum |e| / sum |y|     over the window, every horizon together (NMAE)

A challenger is promoted when it has been scored on at least ``min_share`` of the window's
steps and its score is below ``(1 - margin) x`` the champion's on those same steps; the
best such challenger wins. After a change of champion every window restarts, so that a
new champion is never judged on steps it did not forecast. Decisions carry their figures.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from shadowcast.store.schema import MODEL_EVENTS_SCHEMA


@dataclass(frozen=True, slots=True)
class Verdict:
    """``challenger`` should replace ``champion``: the figures behind it."""

    challenger: str
    champion: str
    challenger_score: float
    champion_score: float
    steps: int
    margin: float

    def figures(self) -> dict[str, Any]:
        return {
            "challenger_score": round(self.challenger_score, 6),
            "champion_score": round(self.champion_score, 6),
            "steps": self.steps,
            "margin": self.margin,
        }

    @property
    def reason(self) -> str:
        gain = 1.0 - self.challenger_score / self.champion_score if self.champion_score else 0.0
        return (
            f"{self.challenger} NMAE {self.challenger_score:.4f} vs {self.champion} "
            f"{self.champion_score:.4f} over {self.steps} steps ({gain:.1%} better, "
            f"margin {self.margin:.0%})"
        )


class Referee:
    """Windowed NMAE per model from the ledger's rows (module docstring)."""

    def __init__(
        self, window_steps: int, margin: float, *, min_share: float = 0.9, kind: str = "od"
    ) -> None:
        self.window = max(1, int(window_steps))
        self.margin = float(margin)
        self.min_share = float(min_share)
        self.kind = kind
        # model -> target step -> [abs_err, abs_actual], last ``window`` steps
        self.sums: dict[str, dict[int, list[float]]] = {}
        self.steps: deque[int] = deque(maxlen=self.window)

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """The ledger's rows of one step (``Ledger.take_rows``)."""
        for r in rows:
            if r["kind"] != self.kind:
                continue
            t = int(r["time"])
            if not self.steps or t > self.steps[-1]:
                self.steps.append(t)
            acc = self.sums.setdefault(str(r["model"]), {}).setdefault(t, [0.0, 0.0])
            acc[0] += float(r["abs_err"])
            acc[1] += float(r["abs_actual"])
        first = self.steps[0] if self.steps else 0
        for per in self.sums.values():
            for t in [t for t in per if t < first]:
                del per[t]

    def scores(self, champion: str) -> dict[str, dict[str, float]]:
        """Per challenger: its score and the champion's on the steps both were scored."""
        champ = self.sums.get(champion, {})
        out = {}
        for name, per in self.sums.items():
            if name == champion:
                continue
            common = [t for t in per if t in champ]
            err = sum(per[t][0] for t in common)
            c_err = sum(champ[t][0] for t in common)
            act = sum(champ[t][1] for t in common)
            if act > 0:
                out[name] = {"score": err / act, "champion": c_err / act, "steps": len(common)}
        return out

    def decide(self, champion: str) -> Verdict | None:
        """The challenger to promote now, or None."""
        need = int(self.min_share * self.window)
        best: Verdict | None = None
        for name, s in self.scores(champion).items():
            if s["steps"] < need or s["score"] > (1.0 - self.margin) * s["champion"]:
                continue
            if best is None or s["score"] < best.challenger_score:
                best = Verdict(name, champion, s["score"], s["champion"], int(s["steps"]),
                               self.margin)  # fmt: skip
        return best

    def reset(self) -> None:
        """A new champion: every window starts again."""
        self.sums.clear()
        self.steps.clear()

    def forget(self, name: str) -> None:
        self.sums.pop(name, None)


def model_events_table(events: Iterable[Mapping[str, Any]]) -> pa.Table:
    """``ArenaCycle.take_events()`` as the store's ``model_events`` rows."""
    rows = list(events)

    def num(key: str) -> pa.Array:
        return pa.array([None if r.get(key) is None else float(r[key]) for r in rows], pa.float64())

    return pa.table(
        {
            "time": pa.array([int(r["time"]) * 1000 for r in rows], pa.int64()).cast(
                MODEL_EVENTS_SCHEMA.field("time").type
            ),
            "event": [str(r["event"]) for r in rows],
            "model": [str(r["model"]) for r in rows],
            "version": pa.array([int(r["version"]) for r in rows], pa.int64()),
            "previous": pa.array([int(r["previous"]) for r in rows], pa.int64()),
            "reason": [str(r["reason"]) for r in rows],
            "champion_score": num("champion_score"),
            "challenger_score": num("challenger_score"),
            "detail": [json.dumps(r.get("detail") or {}, default=str) for r in rows],
        },
        schema=MODEL_EVENTS_SCHEMA,
    )
