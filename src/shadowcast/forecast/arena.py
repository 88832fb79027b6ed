"""Champion and challengers: the forecast cycle with models in shadow, versions and rollback.

:class:`ArenaCycle` is the service's :class:`~shadowcast.forecast.cycle.ForecastCycle` plus:

* **challengers in shadow**: other model families (``challengers``: name -> factory) are
  fitted on the same history whenever the champion is, updated with every step, and
  predict beside it (``predict_shadow``); nothing they say reaches the links, the alerts
  or the plans. A champion replaced by a retrain on drift (``refit(..., keep_previous=True)``)
  or by a promotion stays in shadow as ``family@vN`` and may win back;
* **promotion** (``promote``): a challenger becomes the champion under a new version, the
  old champion is demoted to shadow; the decision and its figures come from the feedback
  stage (:mod:`shadowcast.feedback.champion`), every change is an event (``take_events``);
* **versions**: every fit, retrain, promotion and rollback is a version with its reason;
  the newest ``keep_versions`` are kept on disk (``forecast-versions.json`` beside the
  cycle's state, with every model in shadow: a restart keeps the challengers) and any of
  them can become the champion again (``rollback``), caught up with the steps it has not
  seen from the cycle's history. A rollback asked for from the
  command line (``request_rollback``, a mark in the versions file) is applied by the
  service at its next checkpoint, or when it next starts; one asked for through the API
  (``POST /api/v1/models/rollback``, ``service/operator.py``) is applied at once.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shadowcast.errors import ForecastError
from shadowcast.forecast.base import Forecaster
from shadowcast.forecast.cycle import STACKED, ForecastCycle, ModelFactory, _atomic, _safe
from shadowcast.records import F64, Forecast

log = logging.getLogger(__name__)
VERSIONS_FILE = "forecast-versions.json"


def model_file(family: str, version: int) -> str:
    return f"model-{family}-{_safe(STACKED)}-v{version}.pkl"


class ArenaCycle(ForecastCycle):
    """The forecast cycle with challengers, versions and rollback (module docstring)."""

    def __init__(
        self,
        *args: Any,
        challengers: Mapping[str, ModelFactory] | None = None,
        keep_versions: int = 5,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.configured = self.model_name
        self.factories: dict[str, ModelFactory] = {self.model_name: self.make_model}
        for name, f in (challengers or {}).items():
            self.factories.setdefault(name, f)
        self.challenger_names = [n for n in (challengers or {}) if n != self.model_name]
        self.shadow: dict[str, Forecaster] = {}
        self.shadow_since: dict[str, int] = {}
        self.keep_versions = int(keep_versions)
        self.versions: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []

    # -- the cycle, with shadows ---------------------------------------------------------

    def _signature(self) -> dict[str, Any]:
        sig = super()._signature()
        sig["model"] = self.configured
        return sig

    def observe(
        self, t_s: int, values: Mapping[str, F64], exog: Mapping[str, F64] | None = None
    ) -> None:
        before = (self.last_s, self.version, self.fitted_at_s)
        super().observe(t_s, values, exog)
        if self.last_s == before[0] or (self.version, self.fitted_at_s) != before[1:]:
            return  # nothing new, or refitted (the shadows were refitted with it)
        if self.shadow:
            n = len(self.keys)
            row = np.concatenate(
                [np.asarray(values.get(c, np.zeros(n)), float) for c in self.classes]
            )[None, :]
            for m in self.shadow.values():
                m.update(row)

    def refit(self, now_s: int, reason: str = "schedule", keep_previous: bool = False) -> bool:
        old = self.models.get(STACKED)
        old_v, old_name = self.version, self.model_name
        if not super().refit(now_s):
            return False
        self._version_entry(now_s, "fit" if old is None else f"retrain: {reason}")
        self._event(now_s, "fit" if old is None else "retrain", old_v if old else -1, reason)
        if old is not None and keep_previous:
            self._to_shadow(f"{old_name}@v{old_v}", old, now_s)
        self.fit_challengers(now_s)
        return True

    def fit_challengers(self, now_s: int) -> None:
        """(Re)fit every challenger family on the history (not the champion's family)."""
        if not self.challenger_names or self.history.rows < 2:
            return
        frame = self.stacked_frame()
        for name in self.challenger_names:
            if name == self.model_name:
                continue
            try:
                self._to_shadow(name, self.factories[name]().fit(frame), now_s)
            except ForecastError as exc:
                log.warning("challenger not fitted", extra={"model": name, "error": str(exc)})

    def _to_shadow(self, name: str, model: Forecaster, now_s: int) -> None:
        self.shadow[name] = model
        self.shadow_since[name] = now_s

    def drop_shadow(self, name: str) -> None:
        self.shadow.pop(name, None)
        self.shadow_since.pop(name, None)

    def predict_shadow(self, horizon: int) -> dict[str, Forecast]:
        """Every challenger's stacked forecast ``horizon`` steps ahead."""
        out = {}
        for name, m in self.shadow.items():
            try:
                out[name] = m.predict(horizon, self.levels)
            except ForecastError as exc:
                log.warning("challenger failed", extra={"model": name, "error": str(exc)})
        return out

    # -- promotion, versions, rollback ---------------------------------------------------

    def promote(self, name: str, now_s: int, reason: str, figures: Mapping[str, Any]) -> int:
        """Challenger ``name`` becomes the champion (a new version); the champion goes to
        shadow. Returns the new version."""
        if name not in self.shadow:
            raise ForecastError(f"no challenger {name!r} in shadow (have: {sorted(self.shadow)})")
        new = self.shadow.pop(name)
        self.shadow_since.pop(name, None)
        old = self.models.get(STACKED)
        old_v, old_name = self.version, self.model_name
        self._install(new, name.split("@", 1)[0], now_s)
        self._version_entry(now_s, f"promoted: {reason}")
        self._event(now_s, "promote", old_v, reason, figures)
        if old is not None:
            self._to_shadow(f"{old_name}@v{old_v}", old, now_s)
            self._event(now_s, "demote", old_v, reason, figures, model=old_name, version=old_v)
        return self.version

    def _install(self, model: Forecaster, family: str, now_s: int) -> None:
        self.models = {STACKED: model}
        self.model_name = family
        self.make_model = self.factories.get(family, self.make_model)
        self.version += 1
        self.fitted_at_s = now_s

    def rollback(self, folder: Path, version: int, now_s: int, reason: str = "operator") -> int:
        """Version ``version`` becomes the champion again (as a new version), caught up with
        the history it has not seen. Raises ForecastError when it is not available."""
        entry = next((e for e in self.versions if e["version"] == version), None)
        if entry is None:
            known = ", ".join(str(e["version"]) for e in self.versions) or "none"
            raise ForecastError(f"no model version {version} (known: {known})")
        shadow_name = f"{entry['model']}@v{version}"
        if shadow_name in self.shadow:
            model = self.shadow.pop(shadow_name)
            self.shadow_since.pop(shadow_name, None)
        else:
            path = folder / model_file(entry["model"], version)
            try:
                model = pickle.loads(path.read_bytes())
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
                msg = f"model version {version} is not on disk ({path.name})"
                raise ForecastError(msg) from exc
            self._catch_up(model, entry.get("last_s"))
        old_v = self.version
        self._install(model, entry["model"], now_s)
        self._version_entry(now_s, f"rollback to v{version}: {reason}")
        self._event(now_s, "rollback", old_v, f"to v{version}: {reason}")
        return self.version

    def _catch_up(self, model: Forecaster, last_s: int | None) -> None:
        h = self.history
        if last_s is None or h.start_s is None or self.last_s is None or last_s >= self.last_s:
            return
        first = (int(last_s) - h.start_s) // self.step_s + 1
        if first < 0:
            raise ForecastError("the saved version is older than the history kept: refit instead")
        rows = np.hstack([h.data[c][first : h.rows] for c in self.classes])
        if rows.shape[0]:
            model.update(rows)

    def versions_list(self) -> list[dict[str, Any]]:
        return [
            {**e, "champion": e["version"] == self.version,
             "in_shadow": f"{e['model']}@v{e['version']}" in self.shadow}
            for e in self.versions
        ]  # fmt: skip

    def _version_entry(self, now_s: int, reason: str) -> None:
        self.versions.append(
            {"version": self.version, "model": self.model_name, "created_s": int(now_s),
             "reason": reason, "last_s": self.last_s}
        )  # fmt: skip
        self.versions = self.versions[-max(self.keep_versions * 4, 20) :]

    def _event(
        self, now_s: int, event: str, previous: int, reason: str,
        figures: Mapping[str, Any] | None = None, *, model: str | None = None,
        version: int | None = None,
    ) -> None:  # fmt: skip
        f = dict(figures or {})
        self._events.append({
            "time": int(now_s), "event": event, "model": model or self.model_name,
            "version": self.version if version is None else version, "previous": previous,
            "reason": reason, "champion_score": f.pop("champion_score", None),
            "challenger_score": f.pop("challenger_score", None), "detail": f,
        })  # fmt: skip
        log.info(
            "forecast model %s",
            event,
            extra={"model": model or self.model_name, "version": self.version, "reason": reason},
        )

    def take_events(self) -> list[dict[str, Any]]:
        out, self._events = self._events, []
        return out

    # -- persistence ---------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        current = {self.version} | {int(n.partition("@v")[2]) for n in self.shadow
                                    if n.partition("@v")[2].isdigit()}  # fmt: skip
        for e in self.versions:  # these files are written now, up to date with last_s
            if e["version"] in current:
                e["last_s"] = self.last_s
        path = super().save(folder)
        shadow = {}
        for name, m in self.shadow.items():  # every model in shadow: on disk too
            family, _, tag = name.partition("@v")
            data = pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL)
            shadow[name] = model_file(family, int(tag)) if tag.isdigit() else shadow_file(name)
            _atomic(folder / shadow[name], data)
        for f in folder.glob("shadow-*.pkl"):  # challengers no longer in shadow
            if f.name not in shadow.values():
                f.unlink(missing_ok=True)
        state = {"configured": self.configured, "champion": self.model_name,
                 "version": self.version, "versions": self.versions, "shadow": shadow,
                 "shadow_since": dict(self.shadow_since)}  # fmt: skip
        _atomic(folder / VERSIONS_FILE, json.dumps(state, indent=1).encode())
        for f in folder.glob("model-*-v*.pkl"):  # every family: keep the newest versions
            v = _file_version(f.name)
            if v is not None and v <= self.version - self.keep_versions:
                f.unlink(missing_ok=True)
        return path

    def load(self, folder: Path) -> bool:
        state = read_versions(folder)
        champion = str(state.get("champion") or self.configured)
        self.model_name = champion  # the saved champion's files carry its family's name
        ok = super().load(folder)
        if not ok:
            self.model_name = self.configured
            return False
        self.make_model = self.factories.get(champion, self.make_model)
        self.versions = list(state.get("versions", []))
        self._load_shadow(folder, state)
        return True

    def _load_shadow(self, folder: Path, state: Mapping[str, Any]) -> None:
        """The models that were in shadow when the cycle was saved (saved with it, at the
        same step); one unreadable is left out (refitted with the next fit)."""
        since = dict(state.get("shadow_since", {}))
        for name, fname in dict(state.get("shadow", {})).items():
            try:
                model = pickle.loads((folder / str(fname)).read_bytes())
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
                log.warning("saved challenger unreadable", extra={"model": name, "error": str(exc)})
                continue
            self._to_shadow(str(name), model, int(since.get(name, self.fitted_at_s or 0)))

    def apply_requested_rollback(self, folder: Path) -> int | None:
        """A rollback asked for by ``shadowcast forecast models rollback`` (marked in the
        versions file), applied now: the new version, or None. The next ``save`` clears the
        request."""
        target = read_versions(folder).get("rollback_to")
        if target is None:
            return None
        try:
            return self.rollback(folder, int(target), self.last_s or 0, "operator request")
        except (ForecastError, ValueError) as exc:
            log.error("requested rollback not applied", extra={"error": str(exc)})
            return None


def shadow_file(name: str) -> str:
    """The file of challenger ``name`` in shadow (a family, not a saved version)."""
    return f"shadow-{_safe(name)}-{_safe(STACKED)}.pkl"


def _file_version(name: str) -> int | None:
    try:
        return int(name.rsplit("-v", 1)[1].split(".", 1)[0])
    except (IndexError, ValueError):
        return None


def read_versions(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / VERSIONS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return dict(data) if isinstance(data, dict) else {}


def on_disk(folder: Path, state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The saved versions whose model file is still on disk."""
    out = []
    for e in state.get("versions", []):
        try:
            path = folder / model_file(str(e["model"]), int(e["version"]))
        except (KeyError, TypeError, ValueError):
            continue
        if path.is_file():
            out.append(dict(e))
    return out


def request_rollback(folder: Path, version: int) -> dict[str, Any]:
    """Mark ``version`` to become the champion when the service next loads its models;
    ForecastError when no such version is on disk."""
    state = read_versions(folder)
    entry = next((e for e in state.get("versions", []) if e.get("version") == version), None)
    if entry is None or not (folder / model_file(str(entry["model"]), version)).is_file():
        have = [e["version"] for e in on_disk(folder, state)]
        raise ForecastError(f"no model version {version} on disk in {folder} (have: {have})")
    state["rollback_to"] = version
    _atomic(folder / VERSIONS_FILE, json.dumps(state, indent=1).encode())
    return dict(entry)
