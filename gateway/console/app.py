"""The operator console: a FastAPI app with server-rendered pages and a JSON API behind the same roles.

Who may do what (one table, checked on every request; the role is re-read from the users table):

    page / API                      operator  supervisor  auditor  admin
    alarm queue, alarm, photos         x          x
    acknowledge / close alarm          x          x
    police hold / release / export                x
    devices                            x          x                  x
    activity log                       x          x                  x
    users                                                            x
    audit trail                                               x

Photos are served only under the URL of the alarm they belong to, decrypted on request, with
`Cache-Control: no-store`; each one served writes a "view image" audit record first. An
operator sees the photos of an alarm while it is being handled; once it is closed, only a
supervisor (police hold, export) still can.

Every handler is `async def` on purpose: they run one at a time on the event loop, so the
console's single store connection is never used by two threads at once.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated, Callable

from fastapi import APIRouter, Depends, FastAPI, Form, Header, Path as PathParam, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from gateway.governance import hold as holds
from gateway.governance import audit
from gateway.governance import users
from gateway.storage.keystore import KeyDestroyed
from gateway.storage.store import Store, StoreError, now_ms
from gateway.console import data
from gateway.governance import alarms
from gateway.governance.police_export import build_bundle
from gateway.console.auth import LOGIN_COOKIE, SESSION_COOKIE, LoginForm, LoginLimiter, Session, Sessions, csrf_ok

log = logging.getLogger("vericam.console")
HERE = Path(__file__).parent

PHOTOS = ("operator", "supervisor")
HANDLE = ("operator", "supervisor")
HOLD = ("supervisor",)
DEVICES = ("operator", "supervisor", "admin")
ACTIVITY = ("operator", "supervisor", "admin")
AUDIT = ("auditor",)
USERS = ("admin",)
HOME = {"operator": "/alarms", "supervisor": "/alarms", "auditor": "/audit", "admin": "/devices"}

DEVICE = r"^[a-z0-9-]{1,32}$"
HEX = r"^[0-9a-f]{1,64}$"
IMAGE = r"^[0-9a-f]{32}$"
MAX_MS = 2 ** 53

DeviceId = Annotated[str, PathParam(pattern=DEVICE, description="Device id")]
AlarmId = Annotated[str, PathParam(pattern=HEX, description="Alarm id (hex, chosen by the device)")]
ImageId = Annotated[str, PathParam(pattern=IMAGE, description="Image id")]


class NeedLogin(Exception):
    pass


class LoginBody(BaseModel):
    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class CloseBody(BaseModel):
    outcome: str = Field(description="One of: " + ", ".join(alarms.OUTCOMES), max_length=40)
    note: str = Field("", max_length=1000)


class HoldBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    case: str = Field(min_length=1, max_length=100, description="The police case reference")


class ReleaseBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


def create_app(data_dir: str | Path, secret: str, *, secure_cookies: bool = True, store: Store | None = None,
               clock: Callable[[], int] = now_ms, limiter: LoginLimiter | None = None) -> FastAPI:
    """The console for the gateway data directory `data_dir`. `secret` signs the login form's CSRF token."""
    if not secret or len(secret) < 16:
        raise ValueError("the console secret must have at least 16 characters")
    store = store or Store.open(data_dir)
    sessions = Sessions()
    login_form = LoginForm(secret)
    limiter = limiter or LoginLimiter()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["OUTCOMES"] = alarms.OUTCOMES

    app = FastAPI(title="Vericam operator console", version="1",
                  description="JSON API of the operator console. Log in with POST /api/session; send the "
                              "returned csrf_token as X-CSRF-Token on every POST/DELETE.",
                  docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")
    app.state.store = store
    app.state.sessions = sessions
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # -- plumbing ------------------------------------------------------------------------------
    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        return response

    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    @app.exception_handler(NeedLogin)
    async def need_login(request: Request, exc: NeedLogin):
        if is_api(request):
            return JSONResponse({"detail": "log in first (POST /api/session)"}, status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if is_api(request) or exc.status_code < 400:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        s = sessions.get(request.cookies.get(SESSION_COOKIE))
        return templates.TemplateResponse(request, "error.html", {"s": s, "status": exc.status_code,
                                                                  "message": exc.detail},
                                          status_code=exc.status_code, headers=exc.headers)

    def session(request: Request) -> Session:
        s = sessions.get(request.cookies.get(SESSION_COOKIE))
        if s is None:
            raise NeedLogin()
        role = users.role_of(store, s.user)
        if role is None:
            sessions.end(request.cookies.get(SESSION_COOKIE))
            raise NeedLogin()
        s.role = role
        return s

    def allow(s: Session, roles: tuple[str, ...]) -> None:
        if s.role not in roles:
            raise HTTPException(403, f"the {s.role} role may not do this")

    def require(*roles: str):
        def dep(s: Session = Depends(session)) -> Session:
            allow(s, roles)
            return s
        return dep

    def form_csrf(s: Session, token: str) -> None:
        if not csrf_ok(s, token):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")

    def api_csrf(s: Session, token: str | None) -> None:
        if not csrf_ok(s, token):
            raise HTTPException(403, "missing or wrong X-CSRF-Token header")

    def page(request: Request, name: str, s: Session | None, **ctx) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"s": s, **ctx})

    def client(request: Request) -> str:
        return request.client.host if request.client else "?"

    def set_cookie(response: Response, key: str, value: str, path: str = "/") -> None:
        response.set_cookie(key, value, httponly=True, samesite="strict", secure=secure_cookies, path=path)

    def try_login(request: Request, name: str, password: str) -> tuple[str | None, str | None, float]:
        """(sid, role, retry_after): a session on success; audited either way; rate-limited."""
        where = client(request)
        wait = limiter.retry_after(where, name)
        if wait > 0:
            log.warning("console login refused by the rate limit (client %s)", where)
            return None, None, wait
        role = users.authenticate(store, name, password)
        t = clock()
        shown = name if users.NAME.match(name or "") else "(not a valid user name)"
        if role is None:
            limiter.failed(where, name)
            with store.transaction():
                audit.append(store, "anonymous", "login failed", "wrong user name or password", at_ms=t,
                             subject=shown, detail={"client": where})
            return None, None, 0
        limiter.succeeded(where, name)
        sid, _ = sessions.create(name, role)
        with store.transaction():
            audit.append(store, name, "login", "console login", at_ms=t, subject=name,
                         detail={"client": where, "role": role})
        return sid, role, 0

    def parse_when(value: str | None, field: str) -> int | None:
        """'YYYY-MM-DD' or 'YYYY-MM-DDTHH:MM' (UTC) from a form -> epoch ms."""
        if not value:
            return None
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            raise HTTPException(400, f"{field}: give a date as YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)")
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return int(when.timestamp() * 1000)

    def alarm_or_404(device: str, alarm_id: str) -> dict:
        try:
            return alarms.alarm(store, device, alarm_id)
        except alarms.NotFound as exc:
            raise HTTPException(404, str(exc))

    def may_see_photos(s: Session, a: dict) -> bool:
        if s.role == "supervisor":
            return True
        return s.role == "operator" and a["handling"]["state"] != "closed"

    def serve_photo(s: Session, device: str, alarm_id: str, image_id: str) -> Response:
        allow(s, PHOTOS)
        a = alarm_or_404(device, alarm_id)
        if not may_see_photos(s, a):
            raise HTTPException(403, "this alarm is closed: its photos are no longer shown to operators")
        try:
            photo = alarms.photo_of_alarm(store, device, alarm_id, image_id)
        except alarms.NotFound as exc:
            raise HTTPException(404, str(exc))
        try:
            jpeg = store.images.read(photo["id"])
        except KeyDestroyed:
            raise HTTPException(410, "this photo was deleted (its retention period ended)")
        except StoreError as exc:
            raise HTTPException(404, str(exc))
        alarms.record_view(store, s.user, s.role, device, alarm_id, photo, clock())
        return Response(jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "no-store, private", "Pragma": "no-cache",
                                 "Content-Disposition": f'inline; filename="{image_id}.jpg"'})

    def do_export(s: Session, device: str, alarm_id: str) -> Response:
        allow(s, HOLD)
        alarm_or_404(device, alarm_id)
        try:
            fname, blob, _ = build_bundle(store, device, alarm_id, s.user, clock())
        except alarms.Conflict as exc:
            raise HTTPException(409, str(exc))
        except KeyDestroyed:
            raise HTTPException(410, "a photo of this alarm was already deleted")
        return Response(blob, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{fname}"',
                                 "Cache-Control": "no-store, private"})

    def do_hold(s: Session, device: str, alarm_id: str, reason: str, case: str) -> dict:
        allow(s, HOLD)
        alarm_or_404(device, alarm_id)
        try:
            return holds.place(store, f"{device}/{alarm_id}", s.user, reason, case, clock())
        except holds.HoldError as exc:
            raise HTTPException(409, str(exc))

    def do_release(s: Session, hold_id: int, reason: str) -> dict:
        allow(s, HOLD)
        try:
            return holds.release(store, str(hold_id), s.user, reason, clock())
        except holds.HoldError as exc:
            raise HTTPException(409, str(exc))

    def do_ack(s: Session, device: str, alarm_id: str) -> None:
        allow(s, HANDLE)
        try:
            alarms.acknowledge(store, device, alarm_id, s.user, clock())
        except alarms.NotFound as exc:
            raise HTTPException(404, str(exc))
        except alarms.Conflict as exc:
            raise HTTPException(409, str(exc))

    def do_close(s: Session, device: str, alarm_id: str, outcome: str, note: str) -> None:
        allow(s, HANDLE)
        try:
            alarms.close(store, device, alarm_id, s.user, outcome, note, clock())
        except alarms.NotFound as exc:
            raise HTTPException(404, str(exc))
        except alarms.Conflict as exc:
            raise HTTPException(409, str(exc))
        except ValueError as exc:
            raise HTTPException(400, str(exc))

    # -- pages ---------------------------------------------------------------------------------
    pages = APIRouter(include_in_schema=False)

    @pages.get("/")
    async def home(request: Request):
        s = sessions.get(request.cookies.get(SESSION_COOKIE))
        return RedirectResponse(HOME.get(s.role, "/login") if s else "/login", status_code=303)

    @pages.get("/login")
    async def login_page(request: Request, next: str = ""):
        nonce, token = login_form.issue()
        r = page(request, "login.html", None, token=token, next=next, error=None)
        set_cookie(r, LOGIN_COOKIE, nonce, path="/login")
        return r

    @pages.post("/login")
    async def login_submit(request: Request, name: str = Form("", max_length=64),
                           password: str = Form("", max_length=1024), csrf_token: str = Form(""),
                           next: str = Form("")):
        if not login_form.check(request.cookies.get(LOGIN_COOKIE), csrf_token):
            raise HTTPException(403, "the login form expired or did not come from this console: reload it")
        sid, role, wait = try_login(request, name, password)
        if sid is None:
            nonce, token = login_form.issue()
            if wait:
                msg, code, hdr = (f"Too many failed logins. Try again in {int(wait) + 1} s.", 429,
                                  {"Retry-After": str(int(wait) + 1)})
            else:
                msg, code, hdr = "Wrong user name or password.", 401, {}
            r = templates.TemplateResponse(request, "login.html", {"s": None, "token": token, "next": next,
                                                                   "error": msg}, status_code=code, headers=hdr)
            set_cookie(r, LOGIN_COOKIE, nonce, path="/login")
            return r
        target = next if next.startswith("/") and not next.startswith("//") and "\\" not in next else HOME[role]
        r = RedirectResponse(target, status_code=303)
        set_cookie(r, SESSION_COOKIE, sid)
        r.delete_cookie(LOGIN_COOKIE, path="/login")
        return r

    @pages.post("/logout")
    async def logout(request: Request, csrf_token: str = Form(""), s: Session = Depends(session)):
        form_csrf(s, csrf_token)
        sessions.end(request.cookies.get(SESSION_COOKIE))
        with store.transaction():
            audit.append(store, s.user, "logout", "console logout", at_ms=clock(), subject=s.user)
        r = RedirectResponse("/login", status_code=303)
        r.delete_cookie(SESSION_COOKIE)
        return r

    @pages.get("/alarms")
    async def queue_page(request: Request, s: Session = Depends(require(*HANDLE))):
        return page(request, "queue.html", s, alarms=alarms.alarm_queue(store))

    @pages.get("/alarms/rows")
    async def queue_rows(request: Request, s: Session = Depends(require(*HANDLE))):
        return page(request, "_queue_rows.html", s, alarms=alarms.alarm_queue(store))

    @pages.get("/alarms/{device}/{alarm_id}")
    async def alarm_page(request: Request, device: DeviceId, alarm_id: AlarmId,
                         s: Session = Depends(require(*HANDLE))):
        a = alarm_or_404(device, alarm_id)
        return page(request, "alarm.html", s, a=a, show_photos=may_see_photos(s, a),
                    message=request.query_params.get("msg"))

    @pages.get("/alarms/{device}/{alarm_id}/photos/{image_id}.jpg")
    async def photo(device: DeviceId, alarm_id: AlarmId, image_id: ImageId, s: Session = Depends(session)):
        return serve_photo(s, device, alarm_id, image_id)

    @pages.post("/alarms/{device}/{alarm_id}/acknowledge")
    async def ack_form(device: DeviceId, alarm_id: AlarmId, csrf_token: str = Form(""),
                       s: Session = Depends(session)):
        form_csrf(s, csrf_token)
        do_ack(s, device, alarm_id)
        return RedirectResponse(f"/alarms/{device}/{alarm_id}?msg=acknowledged", status_code=303)

    @pages.post("/alarms/{device}/{alarm_id}/close")
    async def close_form(device: DeviceId, alarm_id: AlarmId, csrf_token: str = Form(""),
                         outcome: str = Form("", max_length=40), note: str = Form("", max_length=1000),
                         s: Session = Depends(session)):
        form_csrf(s, csrf_token)
        do_close(s, device, alarm_id, outcome, note)
        return RedirectResponse(f"/alarms/{device}/{alarm_id}?msg=closed", status_code=303)

    @pages.post("/alarms/{device}/{alarm_id}/hold")
    async def hold_form(device: DeviceId, alarm_id: AlarmId, csrf_token: str = Form(""),
                        reason: str = Form("", max_length=500), case: str = Form("", max_length=100),
                        s: Session = Depends(session)):
        form_csrf(s, csrf_token)
        h = do_hold(s, device, alarm_id, reason, case)
        return RedirectResponse(f"/alarms/{device}/{alarm_id}?msg=hold-{h['hold']}-placed", status_code=303)

    @pages.post("/holds/{hold_id}/release")
    async def release_form(hold_id: int, csrf_token: str = Form(""), reason: str = Form("", max_length=500),
                           back: str = Form(""), s: Session = Depends(session)):
        form_csrf(s, csrf_token)
        do_release(s, hold_id, reason)
        target = back if back.startswith("/alarms/") else "/alarms"
        return RedirectResponse(f"{target}?msg=hold-{hold_id}-released", status_code=303)

    @pages.post("/alarms/{device}/{alarm_id}/export")
    async def export_form(device: DeviceId, alarm_id: AlarmId, csrf_token: str = Form(""),
                          s: Session = Depends(session)):
        form_csrf(s, csrf_token)
        return do_export(s, device, alarm_id)

    @pages.get("/devices")
    async def devices_page(request: Request, s: Session = Depends(require(*DEVICES))):
        return page(request, "devices.html", s, devices=data.devices(store))

    @pages.get("/activity")
    async def activity_page(request: Request, site: str = Query("", max_length=200),
                            since: str = Query("", alias="from", max_length=40),
                            until: str = Query("", alias="to", max_length=40),
                            s: Session = Depends(require(*ACTIVITY))):
        rows = data.activity(store, site or None, parse_when(since, "from"), parse_when(until, "to"))
        return page(request, "activity.html", s, rows=rows, sites=data.sites(store), site=site,
                    since=since, until=until)

    @pages.get("/audit")
    async def audit_page(request: Request, what: str = Query("", max_length=100),
                         who: str = Query("", max_length=100), subject: str = Query("", max_length=200),
                         since: str = Query("", alias="from", max_length=40),
                         until: str = Query("", alias="to", max_length=40),
                         s: Session = Depends(require(*AUDIT))):
        rows = data.audit_trail(store, what or None, who or None, subject or None, parse_when(since, "from"),
                                parse_when(until, "to"))
        return page(request, "audit.html", s, rows=rows, kinds=data.audit_kinds(store), verdict=audit.verify(store),
                    f={"what": what, "who": who, "subject": subject, "from": since, "to": until})

    @pages.get("/users")
    async def users_page(request: Request, s: Session = Depends(require(*USERS))):
        return page(request, "users.html", s, users=users.list_users(store), fmt=alarms.fmt_ms)

    app.include_router(pages)

    # -- JSON API ------------------------------------------------------------------------------
    api = APIRouter(prefix="/api", tags=["console"])
    E = {401: {"description": "not logged in"}, 403: {"description": "role not allowed, or CSRF token missing"}}

    @api.post("/session", responses={401: {"description": "wrong name or password"},
                                     429: {"description": "too many failed logins"}})
    async def api_login(request: Request, body: LoginBody):
        """Log in. Returns the CSRF token to send as X-CSRF-Token; sets the session cookie."""
        sid, role, wait = try_login(request, body.name, body.password)
        if sid is None:
            if wait:
                return JSONResponse({"detail": "too many failed logins"}, status_code=429,
                                    headers={"Retry-After": str(int(wait) + 1)})
            return JSONResponse({"detail": "wrong user name or password"}, status_code=401)
        s = sessions.get(sid)
        r = JSONResponse({"user": s.user, "role": role, "csrf_token": s.csrf})
        set_cookie(r, SESSION_COOKIE, sid)
        return r

    @api.delete("/session", responses=E)
    async def api_logout(request: Request, x_csrf_token: str | None = Header(None),
                         s: Session = Depends(session)):
        api_csrf(s, x_csrf_token)
        sessions.end(request.cookies.get(SESSION_COOKIE))
        with store.transaction():
            audit.append(store, s.user, "logout", "console logout", at_ms=clock(), subject=s.user)
        r = JSONResponse({"ok": True})
        r.delete_cookie(SESSION_COOKIE)
        return r

    @api.get("/me", responses=E)
    async def api_me(s: Session = Depends(session)):
        return {"user": s.user, "role": s.role, "csrf_token": s.csrf}

    @api.get("/alarms", responses=E)
    async def api_alarms(s: Session = Depends(require(*HANDLE))):
        """The alarm queue: open alarms first, newest first."""
        return alarms.alarm_queue(store)

    @api.get("/alarms/{device}/{alarm_id}", responses={**E, 404: {"description": "no such alarm"}})
    async def api_alarm(device: DeviceId, alarm_id: AlarmId, s: Session = Depends(require(*HANDLE))):
        a = alarm_or_404(device, alarm_id)
        for p in a["photos"]:
            p["url"] = f"/api/alarms/{device}/{alarm_id}/photos/{p['id']}"
        return a

    @api.get("/alarms/{device}/{alarm_id}/photos/{image_id}",
             responses={**E, 404: {"description": "no such photo in this alarm"}, 410: {"description": "deleted"},
                        200: {"content": {"image/jpeg": {}}, "description": "the photo (audited)"}})
    async def api_photo(device: DeviceId, alarm_id: AlarmId, image_id: ImageId, s: Session = Depends(session)):
        return serve_photo(s, device, alarm_id, image_id)

    @api.post("/alarms/{device}/{alarm_id}/acknowledge", responses={**E, 404: {}, 409: {}})
    async def api_ack(device: DeviceId, alarm_id: AlarmId, x_csrf_token: str | None = Header(None),
                      s: Session = Depends(session)):
        api_csrf(s, x_csrf_token)
        do_ack(s, device, alarm_id)
        return {"ok": True}

    @api.post("/alarms/{device}/{alarm_id}/close", responses={**E, 400: {}, 404: {}, 409: {}})
    async def api_close(device: DeviceId, alarm_id: AlarmId, body: CloseBody,
                        x_csrf_token: str | None = Header(None), s: Session = Depends(session)):
        api_csrf(s, x_csrf_token)
        do_close(s, device, alarm_id, body.outcome, body.note)
        return {"ok": True}

    @api.post("/alarms/{device}/{alarm_id}/hold", responses={**E, 404: {}, 409: {}})
    async def api_hold(device: DeviceId, alarm_id: AlarmId, body: HoldBody,
                       x_csrf_token: str | None = Header(None), s: Session = Depends(session)):
        """Place a police hold on the alarm's photos (supervisor): kept 30 days after the alarm."""
        api_csrf(s, x_csrf_token)
        return do_hold(s, device, alarm_id, body.reason, body.case)

    @api.post("/holds/{hold_id}/release", responses={**E, 409: {}})
    async def api_release(hold_id: Annotated[int, PathParam(ge=1, le=MAX_MS)], body: ReleaseBody,
                          x_csrf_token: str | None = Header(None), s: Session = Depends(session)):
        api_csrf(s, x_csrf_token)
        return do_release(s, hold_id, body.reason)

    @api.post("/alarms/{device}/{alarm_id}/export",
              responses={**E, 404: {}, 409: {"description": "no active police hold"},
                         200: {"content": {"application/zip": {}}, "description": "the police export bundle"}})
    async def api_export(device: DeviceId, alarm_id: AlarmId, x_csrf_token: str | None = Header(None),
                         s: Session = Depends(session)):
        """Police export (supervisor): photos, case.json, chain-of-custody.json, MANIFEST.sha256, as a zip."""
        api_csrf(s, x_csrf_token)
        return do_export(s, device, alarm_id)

    @api.get("/devices", responses=E)
    async def api_devices(s: Session = Depends(require(*DEVICES))):
        return data.devices(store)

    @api.get("/activity", responses=E)
    async def api_activity(site: str | None = Query(None, max_length=200),
                           from_ms: int | None = Query(None, ge=0, le=MAX_MS),
                           to_ms: int | None = Query(None, ge=0, le=MAX_MS),
                           s: Session = Depends(require(*ACTIVITY))):
        """Activity log (arm/disarm with user slot, alarms, technical alarms), newest first, at most 500."""
        return data.activity(store, site, from_ms, to_ms)

    @api.get("/audit", responses=E)
    async def api_audit(what: str | None = Query(None, max_length=100), who: str | None = Query(None, max_length=100),
                        subject: str | None = Query(None, max_length=200),
                        from_ms: int | None = Query(None, ge=0, le=MAX_MS),
                        to_ms: int | None = Query(None, ge=0, le=MAX_MS),
                        s: Session = Depends(require(*AUDIT))):
        """The audit trail (auditor), newest first, at most 500, with the chain's verdict."""
        v = audit.verify(store)
        return {"chain_ok": v.ok, "problems": v.problems, "records": v.records,
                "entries": data.audit_trail(store, what, who, subject, from_ms, to_ms)}

    @api.get("/users", responses=E)
    async def api_users(s: Session = Depends(require(*USERS))):
        return users.list_users(store)

    app.include_router(api)
    return app
