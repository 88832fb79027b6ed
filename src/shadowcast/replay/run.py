"""Replay a demand series in accelerated time: store -> forecast -> links -> alerts.

Life of one step ``t`` (see docs/design.md):
1. the OD matrix at ``t`` (and its per-application split, when known) goes to the store;
2. routing (shortest path, per-hop ECMP) turns it into link loads, stored as link series;
3. every forecaster sees the new row (``update``) and predicts the next hour with intervals;
4. OD forecasts become link forecasts; the capacity rule raises alerts with a lead time.
Writes are batched per ``chunk_steps``; each chunk lands in one transaction.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.alert.base import Notifier
from shadowcast.alert.rules import CapacityRule
from shadowcast.forecast.base import Forecaster
from shadowcast.forecast.links import copula_loadings, link_bounds, sample_loadings
from shadowcast.plan.routing import link_loads, routing_matrix
from shadowcast.records import F64, Alert, DemandSeries, Forecast, SeriesFrame, Topology
from shadowcast.replay.arrow import dict_array, long_table, ts_array
from shadowcast.replay.config import ReplayConfig
from shadowcast.store.base import Store
from shadowcast.store.schema import TS
from shadowcast.units import horizon_steps, parse_duration

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
ModelFactory = Callable[[str, int], Forecaster]


@dataclass
class HorizonTrack:
    """Link and OD predictions for one model and horizon, aligned to their target step."""

    link_mean: F64
    link_upper: dict[float, F64]
    od_abs_err: float = 0.0
    od_abs_err_persist: float = 0.0
    od_abs_actual: float = 0.0
    covered: dict[float, int] = field(default_factory=dict)
    count: int = 0


@dataclass
class ReplayResult:
    topology: Topology
    demands: DemandSeries
    link_names: list[str]
    capacity_mbps: F64
    util: F64  # [T, L] actual utilisation
    tracks: dict[tuple[str, str], HorizonTrack]  # (model, horizon) -> predictions
    alerts: list[Alert]
    seconds: float
    primary_model: str
    horizons: dict[str, int]
    last_prediction: dict[str, F64]  # horizon -> predicted link utilisation peak from the end
    last_upper: dict[str, F64]

    @property
    def total_mbit(self) -> float:
        return float(self.demands.values.sum(dtype=np.float64))


@dataclass
class _ForecastBuffer:
    """Link forecasts of one chunk, kept as arrays and turned into one table at the end."""

    subjects: Sequence[str]
    model: str
    levels: Sequence[float]
    issued: list[int] = field(default_factory=list)  # unix seconds
    horizon_s: list[int] = field(default_factory=list)
    mean: list[F64] = field(default_factory=list)
    lower: list[F64] = field(default_factory=list)  # [k_levels, n] per entry
    upper: list[F64] = field(default_factory=list)

    def add(self, issued_s: int, horizon_s: int, mean: F64, lower: F64, upper: F64) -> None:
        self.issued.append(issued_s)
        self.horizon_s.append(horizon_s)
        self.mean.append(mean)
        self.lower.append(lower)
        self.upper.append(upper)

    def table(self) -> pa.Table:
        n, k, m = len(self.subjects), len(self.levels), len(self.issued)
        rep = n * k
        issued = np.repeat(np.asarray(self.issued, dtype=np.int64) * 1000, rep)
        hs = np.repeat(np.asarray(self.horizon_s, dtype=np.int64), rep)
        mean = np.tile(np.stack(self.mean), (1, k)).reshape(-1)
        subj = np.tile(np.arange(n, dtype=np.int32), m * k)
        return pa.table(
            {
                "issued": pa.array(issued, type=pa.int64()).cast(TS),
                "target": pa.array(issued + hs * 1000, type=pa.int64()).cast(TS),
                "horizon_s": pa.array(hs),
                "kind": pa.array(["link"] * (m * rep)),
                "subject": dict_array(subj, self.subjects),
                "model": pa.array([self.model] * (m * rep)),
                "mean": pa.array(mean),
                "level": pa.array(np.tile(np.repeat(np.asarray(self.levels, float), n), m)),
                "lower": pa.array(np.stack(self.lower).reshape(-1)),
                "upper": pa.array(np.stack(self.upper).reshape(-1)),
            }
        )


def replay(
    topology: Topology,
    demands: DemandSeries,
    store: Store,
    config: ReplayConfig,
    make_model: ModelFactory,
    rule_threshold: float = 0.9,
    rule_within_s: int = 3600,
    rule_level: float = 0.0,
    rule_clear_ratio: float = 0.95,
    notifiers: Sequence[Notifier] = (),
    by_app: Mapping[str, npt.NDArray[np.float32]] | None = None,
    progress: Progress | None = None,
) -> ReplayResult:
    """Replay ``demands`` over ``topology`` into ``store``; returns what the report needs."""
    t0 = time.perf_counter()
    step = demands.step
    n_t, n_od = demands.values.shape
    names = list(topology.nodes)
    index = topology.node_index()
    src_codes = np.array([index[s] for s, _ in demands.od_pairs], dtype=np.int32)
    dst_codes = np.array([index[d] for _, d in demands.od_pairs], dtype=np.int32)
    link_names = topology.link_names()
    od_names = [f"{s}->{d}" for s, d in demands.od_pairs]
    routing = routing_matrix(topology, demands.od_pairs, config.routing_weight)
    cap_mbps = topology.capacities / 1e6
    loads = link_loads(routing, demands.values)  # [T, L] Mbit/s
    util = loads / cap_mbps[None, :]

    horizons = {h: horizon_steps(h, step) for h in config.horizons}
    h_max = max(horizons.values())
    within = max(1, rule_within_s // step)
    h_pred = max(h_max, within)
    levels = [float(lv) for lv in config.levels]
    primary = config.models[0]
    rule = CapacityRule(link_names, rule_threshold, within, step, rule_clear_ratio)
    alerts: list[Alert] = []

    warm = min(max(2 * h_pred, parse_duration(config.warmup) // step), n_t // 2)
    history = SeriesFrame.from_demands(demands.slice(0, warm))
    models = {m: make_model(m, step).fit(history) for m in config.models}
    tracks = {
        (m, h): HorizonTrack(
            link_mean=np.full_like(util, np.nan),
            link_upper={lv: np.full_like(util, np.nan) for lv in levels},
            covered={lv: 0 for lv in levels},
        )
        for m in config.models
        for h in horizons
    }

    comonotone = config.link_intervals == "comonotone"
    day = max(2, 86400 // step)
    # The link bounds need the correlation of each model's forecast errors, per horizon:
    # learnt from its realised errors over the last day (only those whose target has been
    # observed); until there are enough, from the lag-h changes of the history.
    lags = sorted(set(horizons.values()))
    made: dict[tuple[str, int], deque[tuple[int, F64]]] = {
        (m, h): deque() for m in config.models for h in lags
    }
    errs: dict[tuple[str, int], deque[F64]] = {
        (m, h): deque(maxlen=day) for m in config.models for h in lags
    }

    def loadings_at(end: int) -> dict[str, dict[int, F64]]:
        hist = demands.values[max(0, end - day - max(lags)) : end].astype(np.float64)
        out: dict[str, dict[int, F64]] = {}
        for m in config.models:
            out[m] = {
                h: sample_loadings(np.stack(errs[(m, h)]))
                if len(errs[(m, h)]) >= 50
                else copula_loadings(hist, lag=h)
                for h in lags
            }
        return out

    loadings = {} if comonotone else loadings_at(warm)
    apps = dict(by_app or {})
    app_names = [""] + sorted(apps)
    chunk = config.chunk_steps
    last_pred: dict[str, F64] = {}
    last_upper: dict[str, F64] = {}
    for c0 in range(0, n_t, chunk):
        c1 = min(n_t, c0 + chunk)
        times = demands.times[c0:c1]
        # All traffic (app "") and, when known, each application's share.
        od_tables = [
            long_table(
                times,
                {"src": (src_codes, names), "dst": (dst_codes, names)},
                {"mbps": series[c0:c1]},
            ).append_column("app", pa.array([app] * ((c1 - c0) * n_od)))
            for app, series in [("", demands.values), *((a, apps[a]) for a in app_names[1:])]
        ]
        link_tab = long_table(
            times,
            {"link": (np.arange(len(link_names)), link_names)},
            {
                "load_mbps": loads[c0:c1],
                "capacity_mbps": np.broadcast_to(cap_mbps, (c1 - c0, len(cap_mbps))),
                "utilisation": util[c0:c1],
            },
        )
        buf = _ForecastBuffer(link_names, primary, levels or [0.0])
        od_now: pa.Table | None = None
        for t in range(c0, c1):
            if t < warm:
                continue
            issued = demands.times[t]
            row = demands.values[t : t + 1].astype(np.float64)
            for m, model in models.items():
                model.update(row)
                fc = model.predict(h_pred, levels)
                link_mean = link_loads(routing, fc.mean.T).T / cap_mbps[:, None]  # [L, H]
                # lower bounds are stored only for the model that drives alerts
                if comonotone:  # OD quantiles summed over the link: the worst case
                    link_up_all = {lv: link_loads(routing, v.T).T for lv, v in fc.upper.items()}
                    link_lo_all = (
                        {lv: link_loads(routing, v.T).T for lv, v in fc.lower.items()}
                        if m == primary
                        else {}
                    )
                else:  # half-widths combined with the OD pairs' error correlation
                    link_lo_all, link_up_all = link_bounds(
                        fc, routing, loadings[m], lower=m == primary
                    )
                    for h in lags:
                        q = made[(m, h)]
                        while q and q[0][0] <= t:  # target observed: its error is known
                            tgt0, mean0 = q.popleft()
                            errs[(m, h)].append(demands.values[tgt0] - mean0)
                        q.append((t + h, fc.mean[:, h - 1].copy()))
                link_up = {lv: v / cap_mbps[:, None] for lv, v in link_up_all.items()}
                for hname, h in horizons.items():
                    tr = tracks[(m, hname)]
                    tgt = t + h
                    if tgt < n_t:
                        tr.link_mean[tgt] = link_mean[:, h - 1]
                        actual = demands.values[tgt].astype(np.float64)
                        tr.od_abs_err += float(np.abs(fc.mean[:, h - 1] - actual).sum())
                        tr.od_abs_err_persist += float(np.abs(row[0] - actual).sum())
                        tr.od_abs_actual += float(np.abs(actual).sum())
                        tr.count += 1
                        for lv in levels:
                            if lv in link_up:
                                tr.link_upper[lv][tgt] = link_up[lv][:, h - 1]
                                od_lo = fc.lower[lv][:, h - 1]
                                od_hi = fc.upper[lv][:, h - 1]
                                inside = (actual >= od_lo) & (actual <= od_hi)
                                tr.covered[lv] += int(inside.sum())
                    if m == primary:
                        link_lo = {lv: v[:, h - 1] / cap_mbps for lv, v in link_lo_all.items()}
                        mean_h = link_mean[:, h - 1] * cap_mbps
                        los = [link_lo.get(lv, link_mean[:, h - 1]) for lv in buf.levels]
                        ups = [link_up.get(lv, link_mean)[:, h - 1] for lv in buf.levels]
                        buf.add(
                            int(issued.astype("datetime64[s]").astype(np.int64)),
                            h * step,
                            mean_h,
                            np.stack(los) * cap_mbps,
                            np.stack(ups) * cap_mbps,
                        )
                if m == primary:
                    pred = link_up.get(rule_level, link_mean) if rule_level else link_mean
                    new = rule.evaluate(issued, pred)
                    alerts.extend(new)
                    for a in new:
                        for notifier in notifiers:
                            notifier.send(a)
                    if t == n_t - 1:
                        od_now = od_forecast_table(issued, step, od_names, primary, fc)
                        for hname, h in horizons.items():
                            last_pred[hname] = link_mean[:, :h].max(axis=1)
                            top = max(link_up) if link_up else None
                            last_upper[hname] = (
                                link_up[top][:, :h].max(axis=1)
                                if top is not None
                                else last_pred[hname]
                            )
        if not comonotone and c1 > warm:  # the correlation follows the last day
            loadings = loadings_at(c1)
        with store.transaction():
            store.write("od_series", pa.concat_tables(od_tables))
            store.write("link_series", link_tab)
            if buf.issued:
                store.write("forecasts", buf.table())
            if od_now is not None:
                store.write("forecasts", od_now)
        if progress is not None:
            progress(c1 - c0)

    if alerts:
        store.write("alerts", alerts_table(alerts))
    return ReplayResult(
        topology=topology,
        demands=demands,
        link_names=link_names,
        capacity_mbps=cap_mbps,
        util=util,
        tracks=tracks,
        alerts=alerts,
        seconds=time.perf_counter() - t0,
        primary_model=primary,
        horizons=horizons,
        last_prediction=last_pred,
        last_upper=last_upper,
    )


def od_forecast_table(
    issued: np.datetime64, step: int, subjects: Sequence[str], model: str, fc: Forecast
) -> pa.Table:
    """Every step of one OD forecast (the latest cycle: what ``shadowcast plan`` reads)."""
    n, h = fc.mean.shape
    levels = sorted(fc.lower) or [0.0]
    k = len(levels)
    issued_ms = int(issued.astype("datetime64[ms]").astype(np.int64))
    hs = np.arange(1, h + 1, dtype=np.int64) * step  # seconds ahead, per column
    # row order: level, subject, step
    horizon_s = np.tile(np.repeat(hs[None, :], n, axis=0).reshape(-1), k)
    mean = np.tile(fc.mean.reshape(-1), k)
    lower = np.concatenate([fc.lower.get(lv, fc.mean).reshape(-1) for lv in levels])
    upper = np.concatenate([fc.upper.get(lv, fc.mean).reshape(-1) for lv in levels])
    rows = n * h * k
    return pa.table(
        {
            "issued": pa.array(np.full(rows, issued_ms), type=pa.int64()).cast(TS),
            "target": pa.array(issued_ms + horizon_s * 1000, type=pa.int64()).cast(TS),
            "horizon_s": pa.array(horizon_s),
            "kind": pa.array(["od"] * rows),
            "subject": dict_array(np.tile(np.repeat(np.arange(n), h), k), subjects),
            "model": pa.array([model] * rows),
            "mean": pa.array(mean),
            "level": pa.array(np.repeat(np.asarray(levels, dtype=np.float64), n * h)),
            "lower": pa.array(lower),
            "upper": pa.array(upper),
        }
    )


def stored_od_forecast(store: Store) -> tuple[np.datetime64, int, list[str], Forecast]:
    """The latest OD forecast cycle in ``store``: (issued, step_s, subjects, forecast)."""
    from shadowcast.errors import StoreError

    tab = store.read("forecasts", where={"kind": "od"})
    if tab.num_rows == 0:
        raise StoreError("no OD forecasts in the store: run `shadowcast replay` first")
    issued_ms = tab.column("issued").cast(pa.int64()).to_numpy()
    last = issued_ms == issued_ms.max()
    # several cycles may share the issue time (a replay's and `shadowcast forecast
    # --write`'s): the one written last wins
    models = np.asarray(tab.column("model").to_pylist(), dtype=object)
    newest = models[np.flatnonzero(last)[-1]]
    tab = tab.filter(pa.array(last & (models == newest)))
    subj = np.array(tab.column("subject").to_pylist(), dtype=object)
    names = sorted(set(subj.tolist()))
    pos = {s: i for i, s in enumerate(names)}
    hsec = tab.column("horizon_s").to_numpy()
    step = int(hsec.min())
    col = hsec // step - 1
    row = np.array([pos[s] for s in subj])
    lv = tab.column("level").to_numpy()
    h = int(col.max()) + 1
    mean = np.zeros((len(names), h))
    lower: dict[float, F64] = {}
    upper: dict[float, F64] = {}
    for level in sorted(set(lv.tolist())):
        sel = lv == level
        mean[row[sel], col[sel]] = tab.column("mean").to_numpy()[sel]
        if level > 0:
            lo, hi = np.zeros_like(mean), np.zeros_like(mean)
            lo[row[sel], col[sel]] = tab.column("lower").to_numpy()[sel]
            hi[row[sel], col[sel]] = tab.column("upper").to_numpy()[sel]
            lower[float(level)], upper[float(level)] = lo, hi
    model = str(tab.column("model")[0].as_py())
    issued = np.datetime64(int(issued_ms.max()), "ms").astype("datetime64[s]")
    return issued, step, names, Forecast(mean=mean, lower=lower, upper=upper, model=model)


def alerts_table(alerts: Sequence[Alert]) -> pa.Table:
    return pa.table(
        {
            "issued": ts_array(np.array([a.issued for a in alerts], dtype="datetime64[s]")),
            "at": ts_array(np.array([a.at for a in alerts], dtype="datetime64[s]")),
            "name": pa.array([a.name for a in alerts]),
            "subject": pa.array([a.subject for a in alerts]),
            "severity": pa.array([a.severity for a in alerts]),
            "value": pa.array([a.value for a in alerts], type=pa.float64()),
            "threshold": pa.array([a.threshold for a in alerts], type=pa.float64()),
            "lead_s": pa.array([a.lead_s for a in alerts], type=pa.int64()),
            "message": pa.array([a.message for a in alerts]),
        }
    )
