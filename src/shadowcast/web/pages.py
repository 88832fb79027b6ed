"""The dashboard: server-rendered pages (jinja2) on the API's own views, and uPlot.

Pages: ``/`` (map coloured by predicted utilisation with a slider over the horizons, the
links at risk, alerts firing), ``/links/{name}`` and ``/applications`` (forecast plots with
interval bands and what was measured), ``/alerts`` (with the alert tuner's precision/recall
curve per link class), ``/plans`` (reasons; approve, reject, roll back for admins),
``/actions`` (predicted against realised MLU per applied action), ``/tunnels``,
``/accuracy``. Chart data travel in ``<script type="application/json">`` blocks read by
``static/app.js`` (the CSP allows no inline script).

Who: with tokens configured a page needs the token, from the login form's cookie
(``HttpOnly``, ``SameSite=Strict``) or an ``Authorization: Bearer`` header; every form
carries a CSRF value derived from the token and a secret of this process (checked on POST).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from shadowcast.api import feedback, plans, series, views
from shadowcast.api.auth import COOKIE, AuthError, Principal, Tokens, csrf_value
from shadowcast.api.state import ApiState, NotReady
from shadowcast.errors import ShadowcastError
from shadowcast.web import charts

HERE = Path(__file__).resolve().parent
NAV = (("/", "Map"), ("/applications", "Applications"), ("/alerts", "Alerts"),
       ("/plans", "Plans"), ("/actions", "Actions"), ("/tunnels", "Shadow paths"),
       ("/accuracy", "Accuracy"))  # fmt: skip


def _json(value: Any) -> Markup:
    """JSON safe inside a <script type="application/json"> block (no markup characters)."""
    text = json.dumps(value, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def mount(app: FastAPI, state: ApiState) -> None:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["tojson_safe"] = _json
    templates.env.filters["pct"] = lambda v: "-" if v is None else f"{v:.0%}"
    templates.env.filters["urlq"] = lambda v: quote(str(v), safe="")
    secret = secrets.token_bytes(32)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def who(request: Request) -> tuple[Principal, str]:
        """The caller and their CSRF value; AuthError 401 without a valid token."""
        tokens: Tokens = request.app.state.tokens
        header = request.headers.get("authorization")
        if header:
            p = tokens.from_header(header)
            token = header.partition(" ")[2].strip()
        else:
            token = request.cookies.get(COOKIE, "")
            p = tokens.identify(token or None)
        tokens.charge(p)
        return p, csrf_value(token or p.name, secret)

    def render(request: Request, name: str, **ctx: Any) -> Response:
        try:
            p, csrf = who(request)
        except AuthError as exc:
            if exc.status == 401:
                return RedirectResponse(f"/login?next={quote(request.url.path)}", 303)
            return HTMLResponse(f"<p>{exc}</p>", status_code=exc.status)
        try:
            body = ctx.pop("build")()
        except NotReady as exc:
            body = {"not_ready": str(exc)}
        except ShadowcastError as exc:
            return HTMLResponse(f"<p>{exc}</p>", status_code=404)
        return templates.TemplateResponse(
            request,
            name,
            {"nav": NAV, "who": p, "csrf": csrf, "open": tokens_open(request),
             "health": views.health(state), "path": request.url.path, **ctx, **body},
        )  # fmt: skip

    def tokens_open(request: Request) -> bool:
        return bool(request.app.state.tokens.open)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview(request: Request) -> Response:
        def build() -> dict[str, Any]:
            links = views.links(state)
            risky = sorted(links["links"], key=lambda r: -_peak(r))[:12]
            return {"links": links, "map": charts.topology_map(views.topology(state), links),
                    "risky": risky, "alerts": series.alerts(state, 20)["firing"]}  # fmt: skip

        return render(request, "overview.html", build=build)

    @app.get("/links/{link}", response_class=HTMLResponse, include_in_schema=False)
    def link_page(request: Request, link: str, horizon: str | None = None) -> Response:
        def build() -> dict[str, Any]:
            data = series.link_series(state, link, 24, horizon)
            thr = state.settings.alert.utilisation_threshold
            row = next(r for r in views.links(state)["links"] if r["name"] == link)
            return {"link": row, "data": data, "chart": charts.link_chart(data, thr)}

        return render(request, "link.html", build=build)

    @app.get("/applications", response_class=HTMLResponse, include_in_schema=False)
    def applications(request: Request) -> Response:
        def build() -> dict[str, Any]:
            with state.reading() as svc:
                classes = list(svc.s.classes)
            plots = []
            for c in classes:
                d = series.class_series(state, c, 48)
                plots.append(
                    {"class": c, "apps": d["applications"], "chart": charts.class_chart(d)}
                )
            return {"plots": plots, "apps": series.applications(state, "1h", 50)}

        return render(request, "applications.html", build=build)

    @app.get("/alerts", response_class=HTMLResponse, include_in_schema=False)
    def alerts(request: Request) -> Response:
        def build() -> dict[str, Any]:
            tun = feedback.tuning(state, 24 * 7)
            charts_ = {c: charts.tuning_chart(d) for c, d in tun["classes"].items()}
            return {"alerts": series.alerts(state), "tun": tun, "tun_charts": charts_}

        return render(request, "alerts.html", build=build)

    @app.get("/plans", response_class=HTMLResponse, include_in_schema=False)
    def plan_page(request: Request, done: str = "") -> Response:
        return render(
            request,
            "plans.html",
            build=lambda: {"plans": plans.plan_rows(state)[:50], "done": done},
        )

    @app.post("/plans/{plan_id}/{action}", include_in_schema=False)
    def plan_action(
        request: Request, plan_id: str, action: str, csrf: str = Form(""), reason: str = Form("")
    ) -> Response:
        try:
            p, want = who(request)
        except AuthError as exc:
            return HTMLResponse(f"<p>{exc}</p>", status_code=exc.status)
        if not secrets.compare_digest(csrf, want):
            return HTMLResponse("<p>stale or missing form token: reload the page</p>", 403)
        if action not in ("approve", "reject", "rollback"):
            return HTMLResponse("<p>unknown action</p>", 404)
        if not p.admin:
            plans.audit(state, p, action, plan_id, "forbidden")
            return HTMLResponse(f"<p>{action} needs an admin token</p>", 403)
        try:
            r = plans.act(state, p, action, plan_id, reason[:500])
            note = f"{action}: plan {plan_id} is {r['state']}"
        except ShadowcastError as exc:
            note = f"{action} refused: {' '.join(str(exc).split())}"
        return RedirectResponse(f"/plans?done={quote(note)}", 303)

    @app.get("/actions", response_class=HTMLResponse, include_in_schema=False)
    def action_page(request: Request) -> Response:
        def build() -> dict[str, Any]:
            acts = feedback.actions(state, 24 * 7)
            return {"acts": acts, "chart": charts.actions_chart(acts["actions"])}

        return render(request, "actions.html", build=build)

    @app.get("/tunnels", response_class=HTMLResponse, include_in_schema=False)
    def tunnels(request: Request) -> Response:
        return render(request, "tunnels.html", build=lambda: {"tun": views.tunnels(state)})

    @app.get("/accuracy", response_class=HTMLResponse, include_in_schema=False)
    def accuracy(request: Request) -> Response:
        def build() -> dict[str, Any]:
            acc = views.accuracy(state)
            return {"acc": acc, "chart": charts.accuracy_chart(acc["trend"])}

        return render(request, "accuracy.html", build=build)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/", error: str = "") -> Response:  # noqa: A002
        ctx = {"nav": NAV, "next": _local(next), "error": error, "path": "/login"}
        return templates.TemplateResponse(request, "login.html", ctx)

    @app.post("/login", include_in_schema=False)
    def login(request: Request, token: str = Form(""), next: str = Form("/")) -> Response:  # noqa: A002
        tokens: Tokens = request.app.state.tokens
        try:
            p = tokens.identify(token.strip() or None)
            tokens.charge(p)
        except AuthError as exc:
            return RedirectResponse(f"/login?error={quote(str(exc))}&next={quote(next)}", 303)
        resp = RedirectResponse(_local(next), 303)
        resp.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", max_age=12 * 3600)
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE)
        return resp


def _local(path: str) -> str:
    """Only paths of this site after a login (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


def _peak(row: dict[str, Any]) -> float:
    vals = [p["util"] for p in row["predicted"].values() if p["util"] is not None]
    if row["util_now"] is not None:
        vals.append(row["util_now"])
    return max(vals, default=0.0)
