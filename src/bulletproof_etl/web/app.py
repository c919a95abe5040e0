"""The dashboard as a Starlette application: pages, the review actions, ``/api/health``."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from .. import db
from ..config import DEFAULT_CONFIG, PreservationConfig
from ..review import actions
from ..review.alerts import DEFAULT_STALE_HOURS
from . import pages
from .security import CSRF_COOKIE, TokenMiddleware, allowed_hosts, csrf_ok, csrf_token


def create_app(dsn: str, config: PreservationConfig | None = None, *, host: str = "127.0.0.1",
               token: str | None = None, stale_hours: float = DEFAULT_STALE_HOURS, actor: str | None = None) -> Starlette:
    """The dashboard for the database at ``dsn``; ``host`` is where it is served (Host header check)."""
    config = config or DEFAULT_CONFIG
    env = pages.environment()

    def connect():
        return db.connect(dsn)

    def html(request, template: str, **context) -> Response:
        token_value, new = csrf_token(request)
        body = env.get_template(template).render(static=False, csrf=token_value, url=_url, **context)
        answer = HTMLResponse(body)
        if new:
            answer.set_cookie(CSRF_COOKIE, token_value, httponly=True, samesite="strict")
        return answer

    def with_conn(fn, *args):
        conn = connect()
        try:
            return fn(conn, *args)
        finally:
            conn.close()

    def dashboard(request):
        return html(request, "dashboard.html", **with_conn(pages.dashboard, config, stale_hours))

    def run(request):
        detail = with_conn(pages.run_page, config, request.path_params["run_id"])
        if detail is None:
            return PlainTextResponse(f"no run {request.path_params['run_id']}", status_code=404)
        return html(request, "run.html", detail=detail,
                    report_json=json.dumps(detail["report"], indent=2, sort_keys=True, default=str))

    def review(request):
        status = request.query_params.get("status", "open")
        if status not in ("open", "assigned", "discarded", "all"):
            status = "open"
        data = with_conn(pages.review_page, config, status)
        return html(request, "review.html", done=request.query_params.get("done"),
                    error=request.query_params.get("error"), **data)

    def api_health(request):
        report = with_conn(pages.health_report, config)
        return Response(report.to_json(), media_type="application/json")

    def api_runs(request):
        from ..review.runs import history

        return JSONResponse([r.summary() for r in with_conn(history, config)])

    def api_review(request):
        from ..review.queue import load_queue

        q = with_conn(load_queue, config)
        return Response(json.dumps(q.to_dict(), sort_keys=True, default=str), media_type="application/json")

    async def act(request):
        form = await request.form()
        why = csrf_ok(request, form)
        if why:
            return PlainTextResponse(f"403: {why}", status_code=403)
        name = request.path_params["action"]
        by = actor or f"dashboard ({request.client.host if request.client else 'unknown'})"
        try:
            result = await run_in_threadpool(with_conn, _do, config, name, form, by)
        except actions.ReviewRefused as exc:
            return RedirectResponse("/review?" + urlencode({"error": str(exc)}), status_code=303)
        except (ValueError, KeyError) as exc:
            return PlainTextResponse(f"400: bad form: {exc}", status_code=400)
        return RedirectResponse("/review?" + urlencode({"done": result.message}), status_code=303)

    routes = [
        Route("/", dashboard), Route("/runs/{run_id:int}", run), Route("/review", review),
        Route("/review/{action:str}", act, methods=["POST"]),
        Route("/api/health", api_health), Route("/api/runs", api_runs), Route("/api/review", api_review),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host)),
                  Middleware(TokenMiddleware, token=token)]
    return Starlette(routes=routes, middleware=middleware)


def _url(kind: str, ident) -> str:
    return {"run": f"/runs/{ident}"}[kind]


def _int(form, name: str):
    value = form.get(name)
    return int(value) if value not in (None, "") else None


def _do(conn, config, name: str, form, by: str):
    expect = form.get("expect") or None
    if name == "assign":
        return actions.assign(conn, config, _int(form, "entry"), _int(form, "team"), actor=by, expect_row=expect,
                              expect_team=form.get("expect_team") or None,
                              same_reference=form.get("all_same") == "1")
    if name == "accept":
        return actions.accept(conn, config, _int(form, "entry"), actor=by, expect_row=expect)
    if name == "discard":
        return actions.discard(conn, config, _int(form, "entry"), form.get("reason", ""), actor=by,
                               expect_row=expect)
    if name == "revert":
        return actions.revert(conn, config, form["mapping"], actor=by, expect_row=expect)
    if name == "undo":
        return actions.undo(conn, config, _int(form, "action_id"), actor=by)
    raise KeyError(name)
