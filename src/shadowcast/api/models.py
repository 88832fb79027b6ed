"""Forecast model versions through the API: list them, roll the champion back now (admin).

The rollback runs in the running service under its lock (``service/operator.py``), so the
next step forecasts with the version asked for; it is audited like the plan actions.
"""

from __future__ import annotations

from typing import Any

from shadowcast.api.auth import Principal
from shadowcast.api.plans import audit
from shadowcast.api.state import ApiState, NotFound, NotReady
from shadowcast.errors import ForecastError, ShadowcastError
from shadowcast.forecast.arena import ArenaCycle
from shadowcast.service import operator


def versions(state: ApiState) -> dict[str, Any]:
    with state.reading() as svc:
        fc = svc.s.forecast
        if not isinstance(fc, ArenaCycle):
            return {"champion": fc.model_name, "version": fc.version, "versions": []}
        return {"champion": fc.model_name, "version": fc.version,
                "versions": fc.versions_list()}  # fmt: skip


def rollback(state: ApiState, who: Principal, version: int, reason: str) -> dict[str, Any]:
    """Roll the service's forecast model back to ``version`` now (the caller checked the
    scope); 404 when the version is unknown or no longer on disk."""
    target = f"v{version}"
    why = f"by {who.name}: {reason or 'no reason'}"
    try:
        svc = state.service
        if svc is None:
            raise NotReady("the service is starting: try again in a few seconds")
        try:
            result = operator.rollback_model(svc, version, why)
        except ForecastError as exc:
            raise NotFound(f"{exc} (GET /api/v1/models lists them)") from exc
    except ShadowcastError as exc:
        audit(state, who, "model-rollback", target, "refused", reason=str(exc))
        raise
    audit(state, who, "model-rollback", target, "ok", version=result["version"], note=reason)
    return result
