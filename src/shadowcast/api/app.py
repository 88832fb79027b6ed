"""The FastAPI application: /api/v1 (``api/routes.py``), /metrics, /healthz, the dashboard
(``web/pages.py``), OpenAPI at /docs; and what guards all of it.

* request bodies past ``api.max_body_bytes`` get 413 before they are read whole (declared
  length, or counted as a chunked body streams in);
* CORS: no CORS headers at all unless ``api.cors_origins`` lists origins;
* errors: every refusal is ``{"error": "<one line>"}`` with its status: 401/403/429 from
  ``api/auth.py``, 422 naming the field (``body.reason: ...``, or ``body: invalid JSON ...``),
  404 for an unknown link/plan, 409 for a plan in the wrong state or refused by the checker,
  503 while the service starts; a failure inside is logged and answers 500 without detail;
* every response says ``nosniff``, no framing, no referrer; pages get a CSP without inline
  scripts (the dashboard's data travel in ``application/json`` blocks).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from shadowcast import __version__
from shadowcast.api.auth import AuthError, Tokens
from shadowcast.api.state import ApiState, NotFound, NotReady
from shadowcast.errors import ActuationError, DataError, PlanError, ShadowcastError

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", CSP),
]


class Guard:
    """Body size limit and security headers, as plain ASGI (before any parsing)."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_big = JSONResponse(
            {"error": f"request body larger than {self.max_body} bytes"}, status_code=413
        )
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await too_big(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise _TooBig
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                msg["headers"] = list(msg.get("headers", [])) + SECURITY_HEADERS
            await send(msg)

        try:
            await self.app(scope, counted, guarded_send)
        except _TooBig:
            if not started:
                await too_big(scope, receive, send)


class _TooBig(Exception):
    pass


def _field(loc: Any) -> str:
    parts = [str(p) for p in loc if not isinstance(p, int) or len(loc) > 2]
    return ".".join(parts) or "body"


def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    lines = []
    for e in errors[:5]:
        if e.get("type") == "json_invalid":
            why = (e.get("ctx") or {}).get("error", "not JSON")
            lines.append(f"body: invalid JSON ({why}, at character {e['loc'][-1]})")
        else:
            lines.append(f"{_field(e['loc'])}: {e['msg']}")
    fields = [_field(e["loc"]) for e in errors]
    return JSONResponse({"error": "; ".join(lines), "fields": fields}, status_code=422)


def _auth(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(int(exc.retry_after))
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)


def _ours(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ShadowcastError)
    code = 400
    if isinstance(exc, NotReady):
        code = 503
    elif isinstance(exc, NotFound):
        code = 404
    elif isinstance(exc, PlanError):
        code = 409
    elif isinstance(exc, ActuationError):
        code = 502
    elif isinstance(exc, DataError):
        code = 422
    return JSONResponse({"error": " ".join(str(exc).split())}, status_code=code)


def _crash(request: Request, exc: Exception) -> Response:
    log.exception("api request failed", extra={"path": request.url.path})
    return JSONResponse({"error": "internal error (see the service's log)"}, status_code=500)


def build_app(state: ApiState, *, web: bool = True) -> Any:
    """The ASGI application serving ``state`` (an ASGI callable: uvicorn's or a TestClient's)."""
    from shadowcast.api.routes import authenticate, router
    from shadowcast.service.metrics import metrics_route

    cfg = state.settings.api
    app = FastAPI(
        title="shadowcast",
        version=__version__,
        description="Predicted link capacity, the applications behind it, and the plans.",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.api = state
    app.state.tokens = Tokens(cfg)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(AuthError, _auth)
    app.add_exception_handler(ShadowcastError, _ours)
    app.add_exception_handler(Exception, _crash)
    app.include_router(router, prefix="/api/v1")

    @app.middleware("http")
    async def who_calls(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith("/api/"):
            try:
                request.state.principal = authenticate(request)
            except AuthError as exc:
                return _auth(request, exc)
        response: Response = await call_next(request)
        return response

    app.add_api_route("/metrics", metrics_route, methods=["GET"], include_in_schema=False)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        svc = state.service
        return {"status": "starting" if svc is None else svc.status}

    if web:
        from shadowcast.web.pages import mount

        mount(app, state)
    inner: Any = app
    if cfg.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        inner = CORSMiddleware(
            app,
            allow_origins=list(cfg.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return Guard(inner, cfg.max_body_bytes)
