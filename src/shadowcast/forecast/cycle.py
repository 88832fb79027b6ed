"""The forecast stage of the living service: one model per routing class, kept up to date.

Every closed step brings one row per class (``values[od]``, Mbit/s). The cycle keeps the last
``keep_s`` of them in memory (restored from the store after a restart), fits each class's
model once ``warmup_s`` of history is in, ``update()``s it with every new row (its conformal
intervals adapt online), refits on a schedule (``retrain_every_s``), and predicts
``horizon_steps`` ahead with intervals. The model also sees each OD pair's static inputs
(``meta``: geography, bottleneck capacity; :mod:`shadowcast.forecast.enrich`), the same for
every class. Models are saved (``save``) so that a restart
continues where it stopped instead of refitting from scratch; a saved cycle whose classes,
OD pairs or step differ from the running one is not loaded (it is refitted instead).

Model files are Python pickles written by the service into its own state folder: keep that
folder writable only by the service's user (a pickle from elsewhere can run code).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shadowcast.errors import ForecastError
from shadowcast.forecast.base import Forecaster
from shadowcast.records import F64, Forecast, SeriesFrame

log = logging.getLogger(__name__)

ModelFactory = Callable[[], Forecaster]
STATE_FILE = "forecast-cycle.json"
STACKED = "stacked"  # the one model over every (class, OD) series


@dataclass(frozen=True, slots=True)
class CycleForecast:
    """One cycle's forecasts: per class ``Forecast`` with ``mean[n_od, H]``, issued at
    ``issued_s`` (the end of the last observed step); column ``j`` targets
    ``issued_s + (j + 1) * step_s``."""

    issued_s: int
    step_s: int
    od_pairs: tuple[tuple[str, str], ...]
    by_class: Mapping[str, Forecast]
    model: str
    version: int

    @property
    def horizon(self) -> int:
        return int(next(iter(self.by_class.values())).mean.shape[1])

    def total(self) -> Forecast:
        """All classes summed (mean; bounds summed too: conservative)."""
        fcs = list(self.by_class.values())
        mean = sum(f.mean for f in fcs)
        levels = set.intersection(*(set(f.upper) for f in fcs)) if fcs else set()
        return Forecast(
            mean=np.asarray(mean, dtype=np.float64),
            lower={lv: np.asarray(sum(f.lower[lv] for f in fcs)) for lv in levels},
            upper={lv: np.asarray(sum(f.upper[lv] for f in fcs)) for lv in levels},
            model=self.model,
        )


@dataclass
class _History:
    """The last ``cap`` rows per class, oldest first."""

    cap: int
    n_od: int
    classes: tuple[str, ...]
    exog_names: tuple[str, ...] = ()
    start_s: int | None = None  # time of row 0
    rows: int = 0
    data: dict[str, F64] = field(default_factory=dict)
    exog: dict[str, F64] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = {c: np.zeros((self.cap, self.n_od)) for c in self.classes}
        self.exog = {x: np.full((self.cap, self.n_od), np.nan) for x in self.exog_names}

    def append(
        self, t_s: int, step_s: int, values: Mapping[str, F64], exog: Mapping[str, F64]
    ) -> None:
        if self.start_s is None:
            self.start_s = t_s
        expected = self.start_s + self.rows * step_s
        if t_s < expected:
            raise ForecastError(f"step at {t_s} is older than the history's next ({expected})")
        gap = (t_s - expected) // step_s  # missing steps (service down): NaN rows
        for _ in range(min(gap, self.cap)):
            self._push({c: np.full(self.n_od, np.nan) for c in self.classes}, {}, step_s)
        if gap > self.cap:
            self.start_s = t_s - self.rows * step_s
        self._push(values, exog, step_s)

    def _push(self, values: Mapping[str, F64], exog: Mapping[str, F64], step_s: int) -> None:
        if self.rows == self.cap:
            for arr in (*self.data.values(), *self.exog.values()):
                arr[:-1] = arr[1:]
            assert self.start_s is not None
            self.start_s += step_s
            self.rows -= 1
        for c in self.classes:
            self.data[c][self.rows] = np.asarray(values.get(c, np.zeros(self.n_od)), float)
        for x in self.exog_names:
            self.exog[x][self.rows] = np.asarray(exog.get(x, np.full(self.n_od, np.nan)), float)
        self.rows += 1

    def frame(self, cls: str, step_s: int, keys: tuple[str, ...]) -> SeriesFrame:
        assert self.start_s is not None
        times = np.datetime64(self.start_s, "s") + np.arange(self.rows) * np.timedelta64(
            step_s, "s"
        )
        exog = {x: a[: self.rows].copy() for x, a in self.exog.items()}
        return SeriesFrame(times, keys, self.data[cls][: self.rows].copy(), step_s, exog=exog)


class ForecastCycle:
    """Models per routing class over a fixed set of OD pairs (see the module docstring)."""

    def __init__(
        self,
        make_model: ModelFactory,
        model_name: str,
        classes: Sequence[str],
        od_pairs: Sequence[tuple[str, str]],
        step_s: int,
        *,
        horizon_steps: int,
        levels: Sequence[float] = (80.0, 95.0),
        warmup_s: int = 2 * 86400,
        retrain_every_s: int | None = 86400,
        keep_s: int = 14 * 86400,
        exog: Sequence[str] = (),
        meta: Mapping[str, npt.NDArray[np.generic]] | None = None,
    ) -> None:
        self.make_model = make_model
        self.meta = dict(meta or {})  # static per OD pair (geography, bottleneck capacity)
        self.model_name = model_name
        self.classes = tuple(classes)
        self.od_pairs = tuple(od_pairs)
        self.keys = tuple(f"{a}->{b}" for a, b in self.od_pairs)
        self.step_s = int(step_s)
        self.horizon_steps = int(horizon_steps)
        self.levels = tuple(float(x) for x in levels)
        self.warmup_steps = max(4, int(warmup_s) // self.step_s)
        self.retrain_every_s = retrain_every_s
        cap = max(self.warmup_steps, int(keep_s) // self.step_s)
        self.exog_names = tuple(exog)
        self.history = _History(cap, len(self.od_pairs), self.classes, self.exog_names)
        self.models: dict[str, Forecaster] = {}
        self.version = 0
        self.fitted_at_s: int | None = None
        self.last_s: int | None = None  # start of the last observed step
        self.fit_seconds = 0.0
        self.keep_versions = 3  # model files kept on disk (the newest versions)

    @property
    def ready(self) -> bool:
        return bool(self.models)

    @property
    def next_step_s(self) -> int | None:
        return None if self.last_s is None else self.last_s + self.step_s

    def observe(
        self, t_s: int, values: Mapping[str, F64], exog: Mapping[str, F64] | None = None
    ) -> None:
        """Add the step starting at ``t_s`` (with its exogenous inputs per OD pair: shadow-path
        measurements, bottleneck capacity and headroom); fits at the end of the warm-up,
        refits when due, otherwise updates every model with the new row."""
        if self.last_s is not None and t_s <= self.last_s:
            return  # already seen (a resumed replay re-offers its last step)
        x = {k: v for k, v in (exog or {}).items() if k in self.exog_names}
        gap = 0 if self.last_s is None else (t_s - self.last_s) // self.step_s - 1
        self.history.append(t_s, self.step_s, values, x)
        self.last_s = t_s
        end = t_s + self.step_s
        if not self.models:
            if self.history.rows >= self.warmup_steps:
                self.refit(end)
            return
        if gap > 0 and self.refit(end):  # steps missed while down: refit on the history
            return
        if self.retrain_every_s and self.fitted_at_s is not None:
            if end - self.fitted_at_s >= self.retrain_every_s and self.refit(end):
                return
        n = len(self.keys)
        rows = {
            k: np.tile(np.asarray(x.get(k, np.full(n, np.nan)), float), len(self.classes))[None]
            for k in self.exog_names
        }
        row = np.concatenate([np.asarray(values.get(c, np.zeros(n)), float) for c in self.classes])
        self.models[STACKED].update(row[None, :], rows or None)

    def refit(self, now_s: int) -> bool:
        """Fit one model over every (class, OD) series, stacked class-major: one set of
        calls per step whatever the number of classes (a 3-class synthetic backbone: 2,106
        series in one vectorised update). A fit that fails (a Dask scheduler away) keeps
        the current models and is tried again when the next refit is due (at the next step
        before the first fit); returns whether it fitted."""
        t0 = time.perf_counter()
        try:
            model = self.make_model().fit(self.stacked_frame())
        except ForecastError as exc:
            if self.models:
                self.fitted_at_s = now_s  # the next scheduled refit tries again
            log.error(
                "forecast fit failed; %s",
                f"keeping version {self.version}" if self.models else "no forecast yet",
                extra={"model": self.model_name, "error": str(exc)},
            )
            return False
        self.models = {STACKED: model}
        self.version += 1
        self.fitted_at_s = now_s
        self.fit_seconds = time.perf_counter() - t0
        log.info(
            "forecast models fitted",
            extra={
                "model": self.model_name,
                "version": self.version,
                "rows": self.history.rows,
                "seconds": round(self.fit_seconds, 3),
            },
        )
        return True

    def stacked_frame(self) -> SeriesFrame:
        """The history as one frame of every (class, OD) series, class-major."""
        frames = [self.history.frame(c, self.step_s, self.keys) for c in self.classes]
        keys = tuple(f"{k}/{c}" for c in self.classes for k in self.keys)
        return SeriesFrame(
            frames[0].times,
            keys,
            np.hstack([f.values for f in frames]),
            self.step_s,
            exog={x: np.tile(a, (1, len(self.classes))) for x, a in frames[0].exog.items()},
            meta={k: np.tile(np.asarray(v), len(self.classes)) for k, v in self.meta.items()},
        )

    def predict(self) -> CycleForecast | None:
        if not self.models or self.last_s is None:
            return None
        fc = self.models[STACKED].predict(self.horizon_steps, self.levels)
        n = len(self.keys)

        def part(a: F64, i: int) -> F64:
            return np.asarray(a[i * n : (i + 1) * n])

        fcs = {
            c: Forecast(
                mean=part(fc.mean, i),
                lower={lv: part(v, i) for lv, v in fc.lower.items()},
                upper={lv: part(v, i) for lv, v in fc.upper.items()},
                model=fc.model,
            )
            for i, c in enumerate(self.classes)
        }
        return CycleForecast(
            self.last_s + self.step_s,
            self.step_s,
            self.od_pairs,
            fcs,
            self.model_name,
            self.version,
        )

    # -- persistence ---------------------------------------------------------------------

    def _signature(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "classes": list(self.classes),
            "od_pairs": ["->".join(p) for p in self.od_pairs],
            "step_s": self.step_s,
            "horizon_steps": self.horizon_steps,
            "levels": list(self.levels),
        }

    def save(self, folder: Path) -> Path:
        """Write the models and the cycle's state (atomic per file); returns the state file."""
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for c, m in self.models.items():
            name = f"model-{self.model_name}-{_safe(c)}-v{self.version}.pkl"
            _atomic(folder / name, pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL))
            files[c] = name
        state = {
            **self._signature(),
            "version": self.version,
            "fitted_at_s": self.fitted_at_s,
            "last_s": self.last_s,
            "files": files,
            "saved_at": time.time(),
        }
        path = folder / STATE_FILE
        _atomic(path, json.dumps(state, indent=1).encode())
        for old in folder.glob(f"model-{self.model_name}-*.pkl"):  # keep the last versions
            v = _version_of(old.name)
            if v is not None and v <= self.version - self.keep_versions:
                old.unlink(missing_ok=True)
        return path

    def load(self, folder: Path) -> bool:
        """Restore models saved by ``save`` for the same classes, OD pairs and step; False
        (and nothing changed) when there is nothing compatible to load."""
        path = folder / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if {k: state.get(k) for k in self._signature()} != self._signature():
            log.warning("saved forecast models do not match the running cycle; refitting")
            return False
        models: dict[str, Forecaster] = {}
        try:
            for c, name in dict(state.get("files", {})).items():
                models[c] = pickle.loads((folder / name).read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            log.warning("saved forecast models unreadable; refitting", extra={"error": str(exc)})
            return False
        if set(models) != {STACKED}:
            return False
        self.models = models
        self.version = int(state["version"])
        self.fitted_at_s = state.get("fitted_at_s")
        self.last_s = state.get("last_s")
        return True

    def catch_up(self, rows: Sequence[tuple[int, Mapping[str, F64]]]) -> None:
        """Replay stored steps into the history (after a restart); models saved at
        ``last_s`` are updated with the steps after it."""
        saved_last = self.last_s
        for t_s, values in rows:
            if saved_last is not None and t_s <= saved_last:
                self.history.append(t_s, self.step_s, values, {})
                continue
            if self.last_s is not None and t_s <= self.last_s:
                continue
            self.observe(t_s, values)
        if saved_last is not None and self.last_s is None:
            self.last_s = saved_last


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "all"


def _version_of(name: str) -> int | None:
    stem = name.rsplit("-v", 1)
    if len(stem) != 2:
        return None
    try:
        return int(stem[1].split(".", 1)[0])
    except ValueError:
        return None


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
