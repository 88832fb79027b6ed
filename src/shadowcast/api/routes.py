"""The /api/v1 routes. Every route needs a token (``read``); the writes need ``admin``."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from shadowcast.api import feedback, models, plans, series, views
from shadowcast.api.auth import AuthError, Principal, Tokens
from shadowcast.api.state import ApiState

router = APIRouter()
_writes = threading.Lock()  # one admin action at a time: a plan is approved once


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


WRITES = ("POST", "PUT", "PATCH", "DELETE")


def authenticate(request: Request) -> Principal:
    """The caller of an /api/v1 request, before its body is read: 401 without a valid
    bearer token, 429 past its rate, 403 for a read token on a write (audited)."""
    tokens: Tokens = request.app.state.tokens
    who = tokens.from_header(request.headers.get("authorization"))
    tokens.charge(who)
    if request.method in WRITES and not who.admin:
        forbid(request, who)
    return who


def forbid(request: Request, who: Principal) -> None:
    action = request.url.path.rsplit("/", 1)[-1]
    plans.audit(_state(request), who, action, request.url.path, "forbidden")
    raise AuthError(403, f"{request.method} {request.url.path} needs an admin token; "
                         f"{who.name!r} has scope read")  # fmt: skip


def reader(request: Request) -> Principal:
    who: Principal = request.state.principal
    return who


def admin(request: Request, who: Annotated[Principal, Depends(reader)]) -> Principal:
    if not who.admin:
        forbid(request, who)
    return who


Reader = Annotated[Principal, Depends(reader)]
Admin = Annotated[Principal, Depends(admin)]


class ActionBody(BaseModel):
    """Why (kept in the audit table and the plan's decision)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500)


class PlanBody(BaseModel):
    """A whole plan, as ``shadowcast plan --json`` writes it."""

    model_config = ConfigDict(extra="allow")
    plan_id: str = Field(min_length=1, max_length=200)
    topology: str
    issued: str
    horizon_s: int = Field(ge=0, le=366 * 86400)
    method: str
    splits: list[dict[str, Any]] = Field(max_length=1_000_000)


@router.get("/health")
def health(request: Request, who: Reader) -> dict[str, Any]:
    """starting | ready | degraded, and each stage's counters."""
    return views.health(_state(request))


@router.get("/topology")
def topology(request: Request, who: Reader) -> dict[str, Any]:
    """Routers (with coordinates when the topology has them) and links."""
    return views.topology(_state(request))


@router.get("/links")
def links(request: Request, who: Reader) -> dict[str, Any]:
    """Every link: utilisation now, predicted per horizon with upper bounds, P(exceed the
    alert threshold), runout."""
    return views.links(_state(request))


@router.get("/applications")
def applications(
    request: Request,
    who: Reader,
    last: Annotated[str, Query(max_length=16, pattern=r"^\s*[0-9.]+\s*[a-z]*\s*$")] = "1h",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    """Behaviour per application and site pair over ``last``."""
    return series.applications(_state(request), last, limit)


@router.get("/forecasts")
def forecasts_index(request: Request, who: Reader) -> dict[str, Any]:
    """What has a forecast series: links, application classes, horizons."""
    with _state(request).reading() as svc:
        return {"links": list(svc.link_names), "classes": list(svc.s.classes),
                "horizons": list(svc.s.horizons)}  # fmt: skip


@router.get("/forecasts/links/{link}")
def forecast_link(
    request: Request,
    who: Reader,
    link: str,
    hours: Annotated[float, Query(gt=0, le=24 * 90)] = 24,
    horizon: Annotated[str | None, Query(max_length=16)] = None,
) -> dict[str, Any]:
    """Measured utilisation, what was predicted ``horizon`` ahead with its upper bounds,
    and the latest forecast."""
    return series.link_series(_state(request), link, hours, horizon)


@router.get("/forecasts/classes/{cls}")
def forecast_class(
    request: Request, who: Reader, cls: str, hours: Annotated[float, Query(gt=0, le=24 * 90)] = 24
) -> dict[str, Any]:
    """An application class's demand and its latest forecast with intervals."""
    return series.class_series(_state(request), cls, hours)


@router.get("/alerts")
def alerts(
    request: Request, who: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> dict[str, Any]:
    """Alerts firing, and the history with lead time and outcome."""
    return series.alerts(_state(request), limit)


@router.get("/alerts/tuning")
def alert_tuning(
    request: Request, who: Reader, hours: Annotated[float, Query(gt=0, le=24 * 400)] = 24 * 7
) -> dict[str, Any]:
    """The probability rule's p in force per link class, the precision/recall curve behind
    it (the latest tuning) and the tuner's choices over the last ``hours``."""
    return feedback.tuning(_state(request), hours)


@router.get("/plans")
def plan_list(request: Request, who: Reader) -> dict[str, Any]:
    """Plans the service made, newest first, with their state and reasons."""
    return {"plans": plans.plan_rows(_state(request))}


@router.get("/plans/{plan_id}")
def plan_show(request: Request, who: Reader, plan_id: str) -> dict[str, Any]:
    return plans.show(_state(request), plan_id)


def _act(request: Request, who: Principal, action: str, plan_id: str, body: ActionBody | None):  # type: ignore[no-untyped-def]
    with _writes:
        return plans.act(_state(request), who, action, plan_id, body.reason if body else "")


@router.post("/plans/{plan_id}/approve")
def plan_approve(
    request: Request, who: Admin, plan_id: str, body: Annotated[ActionBody | None, Body()] = None
) -> dict[str, Any]:
    """Apply a proposed plan now, through the checker and the actuator (admin)."""
    result: dict[str, Any] = _act(request, who, "approve", plan_id, body)
    return result


@router.post("/plans/{plan_id}/reject")
def plan_reject(
    request: Request, who: Admin, plan_id: str, body: Annotated[ActionBody | None, Body()] = None
) -> dict[str, Any]:
    """Refuse a proposed plan (admin)."""
    result: dict[str, Any] = _act(request, who, "reject", plan_id, body)
    return result


@router.post("/plans/{plan_id}/rollback")
def plan_rollback(
    request: Request, who: Admin, plan_id: str, body: Annotated[ActionBody | None, Body()] = None
) -> dict[str, Any]:
    """Undo the plan in force through the actuator (admin)."""
    result: dict[str, Any] = _act(request, who, "rollback", plan_id, body)
    return result


@router.post("/plans")
def plan_apply(request: Request, who: Admin, body: PlanBody) -> dict[str, Any]:
    """Apply a whole plan (``shadowcast plan --json``) through the checker (admin)."""
    with _writes:
        return plans.apply_body(_state(request), who, body.model_dump())


class ModelRollbackBody(BaseModel):
    """The saved forecast model version to make the champion again, and why (audited)."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=0, le=10**9)
    reason: str = Field("", max_length=500)


@router.get("/models")
def model_list(request: Request, who: Reader) -> dict[str, Any]:
    """The forecast model versions: the champion, and every saved version with its reason."""
    return models.versions(_state(request))


@router.post("/models/rollback")
def model_rollback(request: Request, who: Admin, body: ModelRollbackBody) -> dict[str, Any]:
    """Make a saved forecast model version the champion now (admin): the next step
    forecasts with it (``shadowcast forecast models rollback --api``)."""
    with _writes:
        return models.rollback(_state(request), who, body.version, body.reason)


@router.get("/tunnels")
def tunnels(request: Request, who: Reader) -> dict[str, Any]:
    """Shadow tunnels and their latest measurements."""
    return views.tunnels(_state(request))


@router.get("/accuracy")
def accuracy(
    request: Request, who: Reader, hours: Annotated[float, Query(gt=0, le=24 * 90)] = 24 * 7
) -> dict[str, Any]:
    """Forecast accuracy from the ledger: running scores and the hourly trend."""
    return views.accuracy(_state(request), hours)


@router.get("/actions")
def actions(
    request: Request, who: Reader, hours: Annotated[float, Query(gt=0, le=24 * 400)] = 24 * 7
) -> dict[str, Any]:
    """Every applied action judged by its effect: the MLU its plan predicted after it and
    the MLU realised, per horizon, over the last ``hours`` (newest first)."""
    return feedback.actions(_state(request), hours)


@router.get("/settings")
def settings(request: Request, who: Reader) -> dict[str, Any]:
    """The settings in force, secrets redacted."""
    return views.settings(_state(request))


@router.get("/audit")
def audit(
    request: Request, who: Admin, limit: Annotated[int, Query(ge=1, le=10_000)] = 200
) -> dict[str, Any]:
    """The admin actions, newest first (admin)."""
    return {"rows": plans.audit_rows(_state(request), limit)}
