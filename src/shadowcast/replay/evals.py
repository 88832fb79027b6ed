"""``shadowcast eval alerts``: the service's own alerting over a series, judged by outcome.

The series drives the living service in observe mode (no action: the network carries what
the series says) on the replay's simulated network; every alert it raises and every
overload episode on the measured links are judged with the definitions of
:mod:`shadowcast.feedback.outcomes`. Under the probability policy the service's tuner sets
``p`` per link class as it goes; ``--test`` then drives a second series with the ``p``
tuned on the first frozen, and judges that one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from shadowcast.alert.policy import ProbabilityRule
from shadowcast.cli_support import emit_json, error_exit, out, settings_of
from shadowcast.errors import ConfigError, ShadowcastError
from shadowcast.feedback.outcomes import OutcomeJudge
from shadowcast.records import Alert
from shadowcast.settings import Settings
from shadowcast.units import format_duration, parse_duration


def judge_replay(
    util: np.ndarray[Any, Any],
    times_s: np.ndarray[Any, Any],
    alerts: list[Alert],
    links: list[str],
    threshold: float,
    within_steps: int,
    step_s: int,
    first_forecast_s: int,
) -> dict[str, Any]:
    """Feed a replay's measured utilisation ``[T, L]`` and its alerts to the judge."""
    judge = OutcomeJudge(links, threshold, within_steps, step_s)
    judge.forecasting(first_forecast_s)
    by_time: dict[int, list[Alert]] = {}
    for a in alerts:
        by_time.setdefault(int(a.issued.astype("datetime64[s]").astype(np.int64)), []).append(a)
    for i, t in enumerate(map(int, times_s)):
        judge.on_alerts(by_time.pop(t, []))
        judge.observe(t, util[i])
    days = (int(times_s[-1]) + step_s - first_forecast_s) / 86400 if len(times_s) else 0.0
    return judge.summary(days)


def _judged_run(settings: Settings, source: Any, within_s: int) -> dict[str, Any]:
    """One replay of ``source`` in observe mode, its alerts judged; with the policy's
    figures (``policy``, ``p`` per class, the tuner's ``curves``)."""
    from shadowcast.replay.driver import run_replay
    from shadowcast.store.config import open_store
    from shadowcast.store.shared import SharedStore

    with tempfile.TemporaryDirectory(prefix="shadowcast-eval-") as tmp:
        store = SharedStore(open_store(settings.store.at(Path(tmp) / "eval.duckdb")))
        try:
            run = run_replay(settings, source, store, Path(tmp) / "state", ipfix=False,
                             mode="observe")  # fmt: skip
        finally:
            store.close()
    st, step = run.state, source.step_s
    threshold = settings.alert.utilisation_threshold
    times = np.array([source.time_s(i) for i in range(st.next_t)], dtype=np.int64)
    first_h = min(st.pred_util)
    issued = np.flatnonzero(np.isfinite(st.pred_util[first_h]).any(axis=1))
    first = int(times[issued[0]]) - first_h * step if issued.size else int(times[-1])
    doc = judge_replay(
        st.util_acting[: st.next_t], times, [a for a in st.alerts
                                             if a.name == "LinkCapacityPredicted"],
        run.service.link_names, threshold, max(1, within_s // step), step, first,
    )  # fmt: skip
    doc["steps"], doc["source"] = int(st.next_t), source.name
    rule, tuner = run.service.s.rule, run.service.s.tuner
    doc["policy"] = settings.alert.policy
    if isinstance(rule, ProbabilityRule):
        doc["p"] = {c: rule.p.get(c, rule.default_p) for c in rule.class_names}
        if tuner is not None:
            tuner.tune()  # the choice the whole series supports (the run tuned as it went)
            rep = tuner.report()
            doc["p_tuned"], doc["curves"] = rep["p"], rep["curves"]
    return doc


def eval_alerts(
    ctx: typer.Context,
    topology: Annotated[Path | None, typer.Option(help="topology (with --demands)")] = None,
    demands: Annotated[
        Path | None, typer.Option(help="demand series (default: the synthetic week)")
    ] = None,
    test: Annotated[
        Path | None,
        typer.Option(
            help="held-out demand series (same topology): judged with p tuned on --demands frozen"
        ),
    ] = None,  # fmt: skip
    capacity_scale: Annotated[
        str, typer.Option(help="a factor, or 'auto' (optimal routing's p95 max utilisation 0.9)")
    ] = "1",
    horizon: Annotated[
        str, typer.Option(help="alert window: a link at or above the threshold within this")
    ] = "1h",  # fmt: skip
    threshold: Annotated[float, typer.Option(help="utilisation threshold")] = 0.9,
    policy: Annotated[
        str | None,
        typer.Option(help="threshold or probability (default: the alert.policy setting)"),
    ] = None,
    weeks: Annotated[float, typer.Option(help="synthetic series length")] = 1.0,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run the service's own alerting over a series (observe mode: no action) and judge it.

    An episode is a maximal run of steps with a link's measured utilisation at or above
    the threshold. An alert is true if an episode on its link starts within its horizon,
    or is under way when it is raised but was not announced yet; otherwise it is a false
    alarm. An episode is announced when an alert on its link was raised before it started
    with the start inside the alert's horizon; its lead is the start minus the earliest
    such alert. Episodes starting less than one horizon after the first forecast are not
    counted. Prints alerts, true_alerts, precision (true / alerts), recall (announced /
    episodes), episodes, episodes_announced, lead_minutes_median, false_alarms_per_day.

    The probability policy alerts when P(link >= threshold within the horizon) >= p, p
    per link class, and resolves when that episode is over or the probability falls below
    p x alert.clear_ratio. Its tuner replays the rule over the history for a grid of p,
    judges it with the definitions above and picks per class the lowest p whose precision
    reaches alert.target_precision; the output adds p (in force at the end), p_tuned (the
    choice over the whole series) and curves (precision and recall per p and class).
    With --test, p is tuned on --demands, then frozen while --test is judged: the figures
    are the held-out series', the training series' are under "train"."""
    from shadowcast.replay.source import capacity_scale as capacity_scale_of
    from shadowcast.replay.source import load_source

    try:
        settings = settings_of(ctx)
        within_s = parse_duration(horizon)
        if not 0 < threshold <= 2:
            raise ConfigError(f"--threshold: {threshold} is not in (0, 2]")
        if policy is not None and policy not in ("threshold", "probability"):
            raise ConfigError(f"--policy: {policy!r} is not threshold or probability")
        if test is not None and demands is None:
            raise ConfigError("--test needs --demands (and --topology): the series to tune on")
        source = load_source(topology, demands, None, weeks, settings.replay.seed)
        scale = capacity_scale_of(capacity_scale, source)
        if scale != 1.0:
            source = source.scaled(scale)
        alert = settings.alert.model_copy(
            update={"utilisation_threshold": threshold, "within_s": within_s,
                    "policy": policy or settings.alert.policy}
        )  # fmt: skip
        settings = settings.model_copy(update={"alert": alert})
        doc = _judged_run(settings, source, within_s)
        if test is not None:
            if alert.policy != "probability":
                raise ConfigError("--test tunes p: it needs the probability policy")
            held = load_source(topology, test, None, weeks, settings.replay.seed)
            held = held.scaled(scale) if scale != 1.0 else held
            frozen = alert.model_copy(update={"p": doc.get("p_tuned", {}), "tune": False})
            train = doc
            doc = _judged_run(settings.model_copy(update={"alert": frozen}), held, within_s)
            doc["train"] = train
    except ShadowcastError as exc:
        raise error_exit(exc) from None
    doc = {**doc, "threshold": threshold, "horizon": horizon, "capacity_scale": scale}
    if json_out:
        emit_json(doc)
        return
    out.print(f"{doc['source']}: {doc['alerts']} alerts, {doc['true_alerts']} true; "
              f"{doc['episodes_announced']}/{doc['episodes']} episodes announced; "
              f"precision {doc['precision']}, recall {doc['recall']}, median lead "
              f"{doc['lead_minutes_median']} min, within {format_duration(within_s)}; "
              f"policy {doc['policy']}" + (f", p {doc['p']}" if "p" in doc else ""))  # fmt: skip
