"""What each input contributes: the backtest again without each input group.

For a model and a frame, :func:`ablate` runs the rolling-origin backtest
(:func:`shadowcast.forecast.evaluate.evaluate`) with every input, then once per input group
the model reads and the frame carries (:mod:`shadowcast.forecast.inputs`) with that group
left out, and once with its own history only. Per (variant, horizon) it reports the NMAE,
the ratio to persistence and the change against all inputs: ``delta_nmae = NMAE without
the group - NMAE with everything`` (> 0: the group helps; < 0: the model does better
without it) and the same in percent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shadowcast.forecast.evaluate import evaluate
from shadowcast.forecast.inputs import check_groups, present_groups
from shadowcast.forecast.registry import make_model
from shadowcast.records import SeriesFrame

ALL = "all inputs"
HISTORY = "history only"


def model_groups(model: str, options: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The input groups ``model`` reads (its ``input_groups``)."""
    m = make_model(model, **(options or {}))
    return tuple(m.input_groups)


def ablate(
    series: SeriesFrame,
    test: SeriesFrame | None,
    horizons_steps: Sequence[int],
    model: str,
    levels: Sequence[float] = (80.0, 95.0),
    *,
    groups: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    test_fraction: float = 0.3,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (variant, horizon): ``inputs`` (``"all inputs"``, ``"-<group>"``,
    ``"history only"``), ``group``, ``horizon``, ``nmae``, ``mase_persistence``,
    ``delta_nmae``, ``delta_pct``, ``coverage_*`` and ``seconds`` (see the module doc).
    ``groups``: the groups to leave out one at a time (default: those the model reads and
    the frame carries)."""
    opts = dict(options or {})
    reads = model_groups(model, {**opts, "horizons": [h * series.step for h in horizons_steps]})
    have = present_groups(series.meta, series.exog)
    chosen = check_groups(groups) if groups is not None else tuple(g for g in reads if g in have)
    variants: list[tuple[str, str | None, tuple[str, ...]]] = [(ALL, None, ())]
    variants += [(f"-{g}", g, (g,)) for g in chosen]
    if len(chosen) > 1:
        variants.append((HISTORY, None, chosen))
    out: list[dict[str, Any]] = []
    base: dict[str, float] = {}
    for label, group, drop in variants:
        rows = evaluate(
            series,
            test,
            horizons_steps,
            [model],
            levels,
            test_fraction=test_fraction,
            model_options={model: {**opts, "exclude": list(drop)}},
            progress=progress,
        )
        for r in rows:
            if label == ALL:
                base[r["horizon"]] = float(r["nmae"])
            ref = base[r["horizon"]]
            cov = {k: v for k, v in r.items() if k.startswith("coverage_") and "decile" not in k}
            out.append(
                {
                    "model": r["model"],
                    "inputs": label,
                    "group": group,
                    "horizon": r["horizon"],
                    "nmae": float(r["nmae"]),
                    "mase_persistence": float(r["mase_persistence"]),
                    "delta_nmae": float(r["nmae"]) - ref,
                    "delta_pct": 100.0 * (float(r["nmae"]) - ref) / ref if ref else 0.0,
                    **cov,
                    "seconds": r["seconds"],
                }
            )
    return out
