"""The operator's forecast: every series ahead, mapped onto links, with runout.

One forecast cycle from the latest history:

1. fit the configured model on every series (chunked, locally or on Dask:
   :func:`shadowcast.forecast.distributed.fit_predict`) and predict up to the longest
   horizon with intervals;
2. when a routing matrix is given, map the OD forecasts onto links by sampling (quantiles
   do not add: :func:`shadowcast.forecast.links.link_forecast`, Gaussian copula on the
   last day's changes), giving per-link mean, interval and P(load > threshold x capacity)
   at each horizon;
3. runout per link from the observed link loads: the date the p95 of the daily peak
   crosses ``runout_target`` x capacity (needs two days of history).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.errors import ForecastError, StoreError
from shadowcast.forecast.config import ForecastConfig
from shadowcast.forecast.distributed import fit_predict_keys
from shadowcast.forecast.exog import column_codes
from shadowcast.forecast.links import LinkForecast, Runout, copula_loadings, link_forecast, runout
from shadowcast.records import F64, Forecast, SeriesFrame
from shadowcast.store.base import Store
from shadowcast.units import horizon_steps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkInputs:
    """What link forecasts need: ``routing[n_links, n_series]`` (ECMP split fractions),
    link names and capacities in the series' unit (Mbit/s)."""

    names: Sequence[str]
    routing: Any  # scipy sparse or dense [n_links, n_series]
    capacity_mbps: F64


@dataclass(frozen=True)
class ObservedLinks:
    """Measured link loads: ``loads[T, n_links]`` (Mbit/s) at ``times``, with capacities."""

    times: npt.NDArray[np.datetime64]
    loads: F64
    capacity_mbps: F64
    names: Sequence[str]


@dataclass(frozen=True)
class Outlook:
    """One forecast cycle. ``series`` covers steps 1..max horizon; ``links[label]`` is the
    link forecast at horizon ``label`` (one column); ``runout`` per link (None without
    two days of link history)."""

    issued: np.datetime64
    step: int
    keys: tuple[str, ...]
    horizons: dict[str, int]  # label -> steps ahead
    series: Forecast
    model: str
    seconds: float
    link_names: Sequence[str] = ()
    capacity_mbps: F64 | None = None
    links: dict[str, LinkForecast] = field(default_factory=dict)
    runout: Runout | None = None
    report: dict[str, Any] = field(default_factory=dict)


def model_options(cfg: ForecastConfig, step: int) -> dict[str, Any]:
    """Keyword options for ``make_model(cfg.model, ...)`` from the ``forecast:`` settings."""
    opts: dict[str, Any] = {
        "horizons": [max(1, s // step) * step for s in cfg.horizons_s],
        "calibration_window": cfg.calibration_window,
        "scale_rate": cfg.scale_rate,
        "aci_gamma": cfg.aci_gamma,
        "seed": cfg.seed,
        "retire_after": cfg.retire_after,
        "join_after": cfg.join_after,
    }
    gbm = {
        "rounds": cfg.gbm_rounds,
        "max_rows": cfg.gbm_max_rows,
        "refit_every": cfg.gbm_refit_every,
        "bags": cfg.gbm_bags,
    }
    neural = {
        "epochs": cfg.neural_epochs,
        "max_samples": cfg.neural_max_samples,
        "refit_every": cfg.neural_refit_every,
    }
    if cfg.model == "gbm":
        opts.update(gbm)
    elif cfg.model == "neural":
        opts.update(neural)
    elif cfg.model == "auto":
        opts["member_options"] = {"gbm": gbm, "neural": neural}
        opts["members"] = list(cfg.auto_members)
        opts["cal_folds"] = cfg.auto_cal_folds
    return opts


def forecast_outlook(
    frame: SeriesFrame,
    cfg: ForecastConfig,
    *,
    links: LinkInputs | None = None,
    observed: ObservedLinks | None = None,
    client: Any = None,
) -> Outlook:
    """One forecast cycle over ``frame`` (see the module docstring).

    Runout uses ``observed`` link loads when given (in ``links``' order when both are
    given), else the series pushed through ``links.routing``; with neither, no runout.
    Series idle for ``cfg.retire_after`` are not forecast (``Outlook.keys`` lists those
    that are).
    """
    import time

    t0 = time.perf_counter()
    if frame.values.shape[0] < 4:
        raise ForecastError(f"need at least 4 steps of history, got {frame.values.shape[0]}")
    step = frame.step
    labels = {h: horizon_steps(h, step) for h in cfg.horizons}
    H = max(labels.values())
    keys, fc = fit_predict_keys(
        frame,
        cfg.model,
        H,
        cfg.levels,
        chunk_series=cfg.chunk_series,
        options=model_options(cfg, step),
        client=client,
    )
    # retired keys (idle for forecast.retire_after) are not forecast: keep the others
    at = {k: i for i, k in enumerate(frame.keys)}
    live = np.array([at[k] for k in keys], dtype=np.int64)
    if len(keys) < len(frame.keys):
        log.info("idle series retired", extra={"series": len(frame.keys) - len(keys)})
    issued = np.asarray(frame.times[-1], dtype="datetime64[s]")
    # the conformal scores come from the held-out calibration window: longer horizons get
    # a wide fallback interval (see BaseForecaster) and are flagged
    T = frame.values.shape[0]
    reach = min(max(1, cfg.calibration_s // step), T // 3) - 1
    report = {"uncalibrated": [lb for lb, h in labels.items() if h > reach]}
    out: dict[str, Any] = {
        "issued": issued,
        "step": step,
        "keys": keys,
        "horizons": labels,
        "series": fc,
        "model": cfg.model,
        "report": report,
    }
    if links is not None:
        n_links, n_series = np.shape(links.routing)
        if n_series != len(frame.keys) or len(links.names) != n_links:
            raise ForecastError(
                f"routing is {n_links}x{n_series}, expected {len(links.names)} links x "
                f"{len(frame.keys)} series"
            )
        day = max(2, 86400 // step)
        hist = np.nan_to_num(frame.values[-day:, live])
        loadings = copula_loadings(hist) if hist.shape[0] > 3 else None
        cols = [h - 1 for h in labels.values()]
        cut = Forecast(
            mean=fc.mean[:, cols],
            lower={lv: v[:, cols] for lv, v in fc.lower.items()},
            upper={lv: v[:, cols] for lv, v in fc.upper.items()},
            model=fc.model,
        )
        lf = link_forecast(
            cut,
            links.routing[:, live] if live.size < len(frame.keys) else links.routing,
            capacity_mbps=links.capacity_mbps,
            threshold=cfg.threshold,
            loadings=loadings,
            samples=cfg.link_samples,
            seed=cfg.seed,
        )
        out["links"] = {
            label: LinkForecast(
                mean=lf.mean[:, [j]],
                lower={lv: v[:, [j]] for lv, v in lf.lower.items()},
                upper={lv: v[:, [j]] for lv, v in lf.upper.items()},
                p_exceed=None if lf.p_exceed is None else lf.p_exceed[:, [j]],
                threshold=lf.threshold,
            )
            for j, label in enumerate(labels)
        }
        if observed is None:
            loads = np.asarray(links.routing @ np.nan_to_num(frame.values).T).T
            observed = ObservedLinks(frame.times, loads, links.capacity_mbps, links.names)
        elif list(observed.names) != list(links.names):
            raise ForecastError("observed link loads are not in the topology's link order")
    if observed is not None:
        out["link_names"] = list(observed.names)
        out["capacity_mbps"] = np.asarray(observed.capacity_mbps, dtype=np.float64)
        out["runout"] = runout(
            observed.times,
            observed.loads,
            out["capacity_mbps"],
            target=cfg.runout_target,
            horizon_days=cfg.runout_horizon_s / 86400.0,
        )
    return Outlook(**out, seconds=time.perf_counter() - t0)


def series_from_store(
    store: Store, *, by_app: bool = False, days: float | None = None, missing: float = np.nan
) -> SeriesFrame:
    """OD series (all traffic, or per application with keys ``src->dst/app``) from the
    store's ``od_series`` table as a dense frame, keys sorted; a key without a row at a
    step is ``missing`` (NaN, a gap, by default; 0 when absence means no traffic).
    ``days``: only the last ``days`` before the newest row."""
    tab = store.read("od_series")
    if tab.num_rows == 0:
        raise StoreError("no OD series in the store: run `shadowcast replay` or collect first")
    ai, apps = column_codes(tab.column("app"))
    keep = (np.asarray(apps, dtype=object) != "")[ai] == by_app
    if not keep.any():
        what = "per-application" if by_app else "all-traffic"
        raise StoreError(f"no {what} OD series in the store")
    t = tab.column("time").cast(pa.int64()).to_numpy() // 1000  # ms -> s
    if days is not None:
        keep &= t > t[keep].max() - int(days * 86400)
    si, srcs = column_codes(tab.column("src"))
    di, dsts = column_codes(tab.column("dst"))
    combo = si * len(dsts) + di
    if by_app:
        combo = combo * len(apps) + ai
    t, combo, mbps = t[keep], combo[keep], tab.column("mbps").to_numpy()[keep]
    times = np.unique(t)
    if len(times) < 2:
        raise StoreError(f"the store holds {len(times)} time step(s) of OD series; need more")
    uniq, ki = np.unique(combo, return_inverse=True)
    names = []
    for c in uniq.tolist():  # one name per series, not per row
        od, a = divmod(c, len(apps)) if by_app else (c, 0)
        s, d = divmod(od, len(dsts))
        names.append(f"{srcs[s]}->{dsts[d]}" + (f"/{apps[a]}" if by_app else ""))
    order = np.argsort(np.asarray(names, dtype=object), kind="stable")
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    step = int(np.min(np.diff(times)))
    grid = np.arange(times[0], times[-1] + step, step)
    values = np.full((len(grid), len(names)), missing)
    values[np.searchsorted(grid, t), rank[ki.ravel()]] = mbps
    return SeriesFrame(
        times=grid.astype("datetime64[s]"),
        keys=tuple(names[i] for i in order),
        values=values,
        step=step,
    )


def links_from_store(store: Store, names: Sequence[str] | None = None) -> ObservedLinks | None:
    """Observed link loads from the ``link_series`` table (in ``names`` order when given,
    links not named are dropped), or None when it is empty."""
    tab = store.read("link_series")
    if tab.num_rows == 0:
        return None
    codes, stored = column_codes(tab.column("link"))
    names = list(names) if names is not None else sorted(stored)
    pos = {n: i for i, n in enumerate(names)}
    li = np.array([pos.get(n, -1) for n in stored], dtype=np.int64)[codes]
    ok = li >= 0
    if not ok.any():
        return None
    t = tab.column("time").cast(pa.int64()).to_numpy() // 1000
    times, ti = np.unique(t[ok], return_inverse=True)
    li = li[ok]
    loads = np.full((len(times), len(names)), np.nan)
    loads[ti, li] = tab.column("load_mbps").to_numpy()[ok]
    cap = np.full(len(names), np.nan)
    cap[li] = tab.column("capacity_mbps").to_numpy()[ok]
    return ObservedLinks(times.astype("datetime64[s]"), loads, cap, names)
