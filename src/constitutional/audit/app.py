"""The review web app: FastAPI, server-rendered HTML (Jinja2, autoescaped), no CDN.

Access: each reviewer has a token (``cai audit serve --reviewer NAME`` prints a link with
it). Opening the link stores the token in an HttpOnly, SameSite=Strict cookie, which is
enough to *read*. Every *write* must carry the token itself, in the form (the page
embeds it) or as ``Authorization: Bearer``; a cookie alone is not accepted, so another
site cannot post in a reviewer's name. No token: 401. A token we do not know: 403.

Model text is untrusted: Jinja2 escapes it, and the Content-Security-Policy allows only
our own script and stylesheet, no inline script, no images, so even text that slipped
through escaping could not run.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..errors import CaiError
from ..serving import BackgroundServer
from .db import AuditDB

COOKIE = "cai_audit"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'none'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}


def _assets() -> Path:
    return Path(str(resources.files("constitutional") / "data" / "audit"))


def create_app(db_path: str | Path) -> FastAPI:
    db = AuditDB(db_path)
    env = Environment(loader=FileSystemLoader(_assets()), autoescape=select_autoescape(["html"]))
    app = FastAPI(title="cai audit", docs_url=None, redoc_url=None, openapi_url=None)

    def page(name: str, code: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**ctx), status_code=code, headers=HEADERS)

    def denied(status: int) -> HTMLResponse:
        msg = {401: "An access token is needed. Open the link that `cai audit serve` printed.",
               403: "This access token is not valid for this audit."}[status]
        return page("message.html", status, status=f"{status} {'Unauthorized' if status == 401 else 'Forbidden'}",
                    message=msg)

    def reader(request: Request) -> tuple[str | None, str | None]:
        token = request.cookies.get(COOKIE)
        return token, db.reviewer_for(token)

    def refused(token: str | None, reviewer: str | None) -> HTMLResponse | None:
        """The page for a missing (401) or unknown (403) token; None when it is valid."""
        return denied(401) if not token else denied(403) if reviewer is None else None

    def render_item(item_id: str, token: str, reviewer: str) -> HTMLResponse:
        item = db.item(item_id)
        if item is None:
            return page("message.html", 404, status="404 Not found", message="No such item.")
        ids, done = db.queue(reviewer)
        i = ids.index(item_id)
        mine = [r for r in db.reviews(reviewer) if r["item_id"] == item_id]
        return page("item.html", item=item, token=token, reviewer=reviewer, done=len(done),
                    total=len(ids), position=i + 1, review=mine[0] if mine else None,
                    prev_id=ids[i - 1] if i > 0 else None,
                    next_id=ids[i + 1] if i + 1 < len(ids) else None)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, token: str | None = None) -> Response:
        if token is not None:  # arriving from the printed link: keep the token in a cookie
            if db.reviewer_for(token) is None:
                return denied(403)
            r = RedirectResponse("/", status_code=303, headers=HEADERS)
            r.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return r
        token, reviewer = reader(request)
        if no := refused(token, reviewer):
            return no
        ids, done = db.queue(reviewer)
        todo = [i for i in ids if i not in done]
        if not todo:
            return page("done.html", reviewer=reviewer, done=len(done), total=len(ids),
                        first_id=ids[0] if ids else None)
        return render_item(todo[0], token, reviewer)

    @app.get("/item/{item_id}", response_class=HTMLResponse)
    def show(item_id: str, request: Request) -> Response:
        token, reviewer = reader(request)
        if no := refused(token, reviewer):
            return no
        return render_item(item_id, token, reviewer)

    @app.post("/review")
    def review(request: Request, item_id: str = Form(...), action: str = Form("save"),
               label: str | None = Form(None), note: str = Form(""),
               token: str | None = Form(None)) -> Response:
        auth = request.headers.get("authorization", "")
        token = token or (auth[7:] if auth.lower().startswith("bearer ") else None)
        reviewer = db.reviewer_for(token) if token else None
        if no := refused(token, reviewer):
            return no
        item = db.item(item_id)
        if item is None:
            return page("message.html", 404, status="404 Not found", message="No such item.")
        if action == "agree":
            label = item["ai_label"]
        elif action == "disagree":
            if label is None or label == item["ai_label"]:
                others = [c for c in item["choices"] if c != item["ai_label"]]
                label = others[0]
        try:
            db.review(item_id, reviewer, label or "", note.strip())
        except CaiError as e:
            return page("message.html", 400, status="400 Bad request", message=str(e))
        return RedirectResponse("/", status_code=303, headers=HEADERS)

    @app.get("/export.jsonl")
    def export(request: Request) -> Response:
        token, reviewer = reader(request)
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token, reviewer = auth[7:], db.reviewer_for(auth[7:])
        if no := refused(token, reviewer):
            return no
        import json
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in db.reviews())
        return PlainTextResponse(body, media_type="application/x-ndjson", headers=HEADERS)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return PlainTextResponse("not found", status_code=404)
        return Response((_assets() / name).read_bytes(), media_type=STATIC[name], headers=HEADERS)

    return app


class Server(BackgroundServer):
    """The audit app on a background thread (tests, notebooks)."""

    def __init__(self, db_path: str | Path, host: str = "127.0.0.1", port: int = 0):
        super().__init__(create_app(db_path), host, port, name="audit server")
