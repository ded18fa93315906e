"""The operator console's permissions, by HTTP: who sees photos, what is audited, CSRF, the login rate limit."""

import hashlib
import io
import re
import subprocess
import sys
import zipfile

import pytest
from fastapi.testclient import TestClient

from gateway.governance import audit
from gateway.console import create_app
from gateway.storage.store import Store

from support.cli import vericam
from support.console_seed import PASSWORDS, ingest_alarm, init

SECRET = "test-secret-0123456789"


@pytest.fixture
def gw(tmp_path):
    data = init(tmp_path / "gw")
    alarm = ingest_alarm(data)
    app = create_app(data, SECRET, secure_cookies=False)
    yield data, app, alarm
    app.state.store.close()


def client(app):
    return TestClient(app, base_url="http://testserver", follow_redirects=False)


def login(app, name):
    c = client(app)
    r = c.post("/api/session", json={"name": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


def form_login(app, name, password=None):
    c = client(app)
    page = c.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = c.post("/login", data={"name": name, "password": password or PASSWORDS[name], "csrf_token": token})
    return c, r


def photo_urls(c, alarm):
    a = c.get(f"/api/alarms/cam-1/{alarm}").json()
    return [p["url"] for p in a["photos"]]


def views(data):
    with Store.open(data) as s:
        return audit.records(s, what="view image")


def test_an_operator_sees_the_photos_of_an_alarm_and_every_view_is_audited(gw):
    data, app, alarm = gw
    op = login(app, "olivia")
    queue = op.get("/api/alarms").json()
    assert [(a["site"], a["code"], a["photos"], a["state"]) for a in queue] == [("Storgatan 12", "intrusion", 3, "new")]
    urls = photo_urls(op, alarm)
    assert len(urls) == 3
    with Store.open(data) as s:
        stored = {i["id"]: s.images.read(i["id"]) for i in s.images.list("cam-1")}
    for url in urls:
        r = op.get(url)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert "no-store" in r.headers["cache-control"]
        assert r.content == stored[url.rsplit("/", 1)[1]]
    # the HTML page's photo URLs work the same way
    page = op.get(f"/alarms/cam-1/{alarm}")
    imgs = re.findall(r'<img src="([^"]+)"', page.text)
    assert len(imgs) == 3 and op.get(imgs[0]).status_code == 200
    recorded = views(data)
    assert len(recorded) == 4
    assert {r["who"] for r in recorded} == {"olivia"}
    assert {r["subject"] for r in recorded} == set(stored)
    assert all(r["content_hash"] == hashlib.sha256(stored[r["subject"]]).hexdigest() for r in recorded)
    with Store.open(data) as s:
        assert audit.verify(s).ok


def test_auditor_and_admin_never_see_photos(gw):
    data, app, alarm = gw
    url = photo_urls(login(app, "olivia"), alarm)[0]
    for name in ("aud", "adam"):
        c = login(app, name)
        assert c.get(url).status_code == 403
        assert c.get(url.replace("/api", "") + ".jpg").status_code == 403
        assert c.get(f"/api/alarms/cam-1/{alarm}").status_code == 403
        assert c.get("/api/alarms").status_code == 403
    assert views(data) == []
    # ...but the auditor reads the audit trail, which nobody else may
    assert login(app, "aud").get("/api/audit").json()["chain_ok"] is True
    for name in ("olivia", "sam", "adam"):
        assert login(app, name).get("/api/audit").status_code == 403


def test_a_photo_is_served_only_through_its_own_alarm(gw):
    data, app, alarm = gw
    other = ingest_alarm(data)  # a second alarm of the same device
    op = login(app, "olivia")
    url = photo_urls(op, alarm)[0]
    image = url.rsplit("/", 1)[1]
    assert op.get(f"/api/alarms/cam-1/{other}/photos/{image}").status_code == 404
    assert op.get(f"/alarms/cam-1/{other}/photos/{image}.jpg").status_code == 404
    assert op.get(f"/api/alarms/cam-2/{alarm}/photos/{image}").status_code == 404
    assert op.get(f"/images/{image}").status_code == 404
    assert views(data) == []


def test_logged_out_gets_nothing(gw):
    data, app, alarm = gw
    url = photo_urls(login(app, "olivia"), alarm)[0]
    anon = client(app)
    for path in (url, "/api/alarms", f"/api/alarms/cam-1/{alarm}", "/api/devices", "/api/audit", "/api/activity"):
        assert anon.get(path).status_code == 401
    r = anon.get(url.replace("/api", "") + ".jpg")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert anon.get("/alarms").status_code == 303
    assert views(data) == []


def test_a_form_without_its_csrf_token_is_refused(gw):
    data, app, alarm = gw
    c, r = form_login(app, "olivia")
    assert r.status_code == 303
    assert c.post(f"/alarms/cam-1/{alarm}/acknowledge").status_code == 403
    assert c.post(f"/alarms/cam-1/{alarm}/acknowledge", data={"csrf_token": "forged"}).status_code == 403
    api = login(app, "olivia")
    del api.headers["X-CSRF-Token"]
    assert api.post(f"/api/alarms/cam-1/{alarm}/acknowledge").status_code == 403
    with Store.open(data) as s:
        assert audit.records(s, what="acknowledge alarm") == []
    # the login form itself needs its token (and the cookie that pairs with it)
    assert client(app).post("/login", data={"name": "olivia", "password": PASSWORDS["olivia"]}).status_code == 403
    # with the token it works
    page = c.get(f"/alarms/cam-1/{alarm}").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert c.post(f"/alarms/cam-1/{alarm}/acknowledge", data={"csrf_token": token}).status_code == 303


def test_the_api_login_takes_json_only_so_a_cross_site_form_cannot_log_a_browser_in(gw):
    data, app, _ = gw
    body = '{"name": "olivia", "password": "%s"}' % PASSWORDS["olivia"]
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        r = client(app).post("/api/session", content=body, headers={"content-type": ctype})
        assert r.status_code == 422 and "set-cookie" not in r.headers


def test_session_cookie_is_httponly_samesite_strict_and_secure_by_default(tmp_path):
    data = init(tmp_path / "gw")
    app = create_app(data, SECRET)  # the default: Secure cookies
    try:
        r = TestClient(app, base_url="https://testserver").post(
            "/api/session", json={"name": "olivia", "password": PASSWORDS["olivia"]})
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    finally:
        app.state.store.close()


def test_failed_logins_are_rate_limited_and_logins_are_audited(gw):
    data, app, _ = gw
    codes = [client(app).post("/api/session", json={"name": "olivia", "password": "guess"}).status_code
             for _ in range(6)]
    assert codes == [401] * 5 + [429]
    # even the right password is refused while the limit holds, without being checked
    r = client(app).post("/api/session", json={"name": "olivia", "password": PASSWORDS["olivia"]})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    c, r = form_login(app, "sam", "wrong")
    assert r.status_code == 429 and "Too many failed logins" in r.text  # same client address
    with Store.open(data) as s:
        failed = audit.records(s, what="login failed")
        assert len(failed) == 5 and {f["subject"] for f in failed} == {"olivia"}
        assert not any("guess" in repr(f) for f in failed)
        assert audit.records(s, what="login") == []


def test_a_successful_login_is_audited(gw):
    data, app, _ = gw
    c, r = form_login(app, "olivia")
    assert r.status_code == 303 and r.headers["location"] == "/alarms"
    with Store.open(data) as s:
        [rec] = audit.records(s, what="login")
    assert rec["who"] == "olivia" and rec["detail"]["role"] == "operator"


def test_supervisor_holds_and_exports_with_a_manifest_and_chain_of_custody(gw):
    data, app, alarm = gw
    op = login(app, "olivia")
    for url in photo_urls(op, alarm):
        op.get(url)
    assert op.post(f"/api/alarms/cam-1/{alarm}/hold", json={"reason": "burglary", "case": "P-1"}).status_code == 403
    sup = login(app, "sam")
    assert sup.post(f"/api/alarms/cam-1/{alarm}/export").status_code == 409  # no hold yet
    r = sup.post(f"/api/alarms/cam-1/{alarm}/hold", json={"reason": "burglary reported", "case": "2026-4711"})
    assert r.status_code == 200 and r.json()["images"] == 3
    r = sup.post(f"/api/alarms/cam-1/{alarm}/export")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    manifest = z.read("MANIFEST.sha256").decode().splitlines()
    names = {line.split("  ", 1)[1] for line in manifest}
    assert names == set(z.namelist()) - {"MANIFEST.sha256"}
    for line in manifest:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(z.read(name)).hexdigest() == digest
    assert len([n for n in names if n.endswith(".jpg")]) == 3
    custody = z.read("chain-of-custody.json").decode()
    assert "view image" in custody and "place hold" in custody and "olivia" in custody
    assert '"case_reference": "2026-4711"' in z.read("case.json").decode()
    with Store.open(data) as s:
        [exp] = audit.records(s, what="police export")
        assert exp["who"] == "sam" and exp["content_hash"] == hashlib.sha256(z.read("MANIFEST.sha256")).hexdigest()
        assert audit.verify(s).ok


def test_closing_an_alarm_records_the_outcome_and_hides_photos_from_operators(gw):
    data, app, alarm = gw
    op = login(app, "olivia")
    url = photo_urls(op, alarm)[0]
    assert op.post(f"/api/alarms/cam-1/{alarm}/close", json={"outcome": "bogus"}).status_code == 400
    r = op.post(f"/api/alarms/cam-1/{alarm}/close", json={"outcome": "verified-burglary", "note": "figure at door"})
    assert r.status_code == 200
    assert op.get("/api/alarms").json()[0]["state"] == "closed"
    assert op.get(url).status_code == 403
    assert op.get(url, params={"reason": "curious"}).status_code == 403  # a reason does not help an operator
    # A supervisor opens a closed alarm's photos only with a reason, which each view's record carries.
    sup = login(app, "sam")
    r = sup.get(url)
    assert r.status_code == 403 and "reason" in r.json()["detail"]
    assert sup.get(f"/api/alarms/cam-1/{alarm}").json()["photos_need_reason"] is True
    assert sup.get(url, params={"reason": "customer complaint 2026-118"}).status_code == 200
    with Store.open(data) as s:
        [rec] = audit.records(s, what="close alarm")
        seen = [v for v in audit.records(s, what="view image") if v["who"] == "sam"]
    assert rec["detail"]["outcome"] == "verified-burglary"
    # The note outlives its 90-day rule in no audit record: the trail keeps its length and keyed hash only.
    assert "figure at door" not in str(rec) and rec["detail"]["note"]["length"] == len("figure at door")
    with Store.open(data) as s:
        assert audit.text_matches(s, rec, "note", "figure at door")
        assert not audit.text_matches(s, rec, "note", "figure at window")
    assert [(v["why"], v["detail"]["reason"]) for v in seen] == [("customer complaint 2026-118",) * 2]


def test_a_supervisor_opens_a_closed_alarms_photos_in_the_console_with_a_reason(gw):
    data, app, alarm = gw
    login(app, "olivia").post(f"/api/alarms/cam-1/{alarm}/close", json={"outcome": "false-user-error"})
    c, _ = form_login(app, "sam")
    page = c.get(f"/alarms/cam-1/{alarm}").text
    assert "<img" not in page and "Reason for opening the photos" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert c.post(f"/alarms/cam-1/{alarm}/open", data={"csrf_token": token, "reason": "  "}).status_code == 400
    r = c.post(f"/alarms/cam-1/{alarm}/open", data={"csrf_token": token, "reason": "insurer asked, ref 77"})
    assert r.status_code == 303
    imgs = re.findall(r'<img src="([^"]+)"', c.get(f"/alarms/cam-1/{alarm}").text)
    assert len(imgs) == 3 and c.get(imgs[0]).status_code == 200
    # an operator cannot open them, with or without a form
    o, _ = form_login(app, "olivia")
    otoken = re.search(r'name="csrf_token" value="([^"]+)"', o.get(f"/alarms/cam-1/{alarm}").text).group(1)
    assert o.post(f"/alarms/cam-1/{alarm}/open", data={"csrf_token": otoken, "reason": "x"}).status_code == 403
    with Store.open(data) as s:
        [opened] = audit.records(s, what="open photos")
        [view] = [v for v in audit.records(s, what="view image") if v["who"] == "sam"]
    assert (opened["who"], opened["why"], opened["detail"]["because"]) == ("sam", "insurer asked, ref 77",
                                                                           "alarm closed")
    assert view["why"] == "insurer asked, ref 77"


def test_devices_and_activity_log(gw):
    data, app, _ = gw
    [d] = login(app, "adam").get("/api/devices").json()
    assert d["site"] == "Storgatan 12"
    c = login(app, "olivia")
    [d] = c.get("/api/devices").json()
    assert d["state"] == "online" and d["fw"] == "1.4.2" and d["last_heartbeat_ms"]
    events = c.get("/api/activity", params={"site": "Storgatan 12"}).json()
    assert {e["kind"] for e in events} == {"armed", "alarm"}
    assert c.get("/api/activity", params={"site": "elsewhere"}).json() == []
    assert c.get("/api/activity", params={"from_ms": 2 ** 52}).json() == []
    assert "Storgatan 12" in c.get("/activity", params={"site": "Storgatan 12", "from": "2020-01-01"}).text
    assert c.get("/activity", params={"from": "yesterday"}).status_code == 400


def test_the_admin_sees_no_activity_log(gw):
    data, app, _ = gw
    adam = login(app, "adam")
    assert adam.get("/api/activity").status_code == 403
    assert adam.get("/activity").status_code == 403
    assert "/activity" not in adam.get("/devices").text  # not even the link
    assert login(app, "sam").get("/api/activity").status_code == 200
    with Store.open(data) as s:
        assert [r["who"] for r in audit.records(s, what="view activity log")] == ["sam"]


def test_users_add_from_stdin_never_echoes_the_password(tmp_path):
    data = init(tmp_path / "gw")
    secret = "a-very-secret-password"
    r = vericam("users", "add", "nina", "--role", "operator", "--data", data, "--password-stdin", "--by", "adam",
                input=secret + "\n")
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    app = create_app(data, SECRET, secure_cookies=False)
    try:
        assert client(app).post("/api/session", json={"name": "nina", "password": secret}).status_code == 200
        with Store.open(data) as s:
            assert secret not in repr(audit.records(s))
    finally:
        app.state.store.close()


def test_gateway_run_serves_the_console_on_localhost(tmp_path, broker):
    import signal
    import socket
    import time

    import httpx

    data = init(tmp_path / "gw")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "gw.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "gateway", "run", "--data", str(data),
                             "--broker", f"{broker.host}:{broker.port}", "--console-port", str(port)],
                            stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while b"operator console on" not in (tmp_path / "gw.log").read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "gw.log").read_text()
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/login").status_code == 200
        assert httpx.get(f"{base}/api/alarms").status_code == 401
        r = httpx.post(f"{base}/api/session", json={"name": "olivia", "password": PASSWORDS["olivia"]})
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        log.close()
    assert PASSWORDS["olivia"] not in (tmp_path / "gw.log").read_text()


def test_a_supervisor_releases_a_hold_with_a_reason(gw):
    data, app, alarm = gw
    sup = login(app, "sam")
    hold = sup.post(f"/api/alarms/cam-1/{alarm}/hold", json={"reason": "burglary", "case": "K-1"}).json()["hold"]
    assert login(app, "olivia").post(f"/api/holds/{hold}/release", json={"reason": "x"}).status_code == 403
    r = sup.post(f"/api/holds/{hold}/release", json={"reason": "case closed by the police"})
    assert r.status_code == 200, r.text
    assert sup.post(f"/api/holds/{hold}/release", json={"reason": "again"}).status_code == 409
    assert sup.post(f"/api/alarms/cam-1/{alarm}/export").status_code == 409  # no active hold any more
    assert all(p["hold_id"] is None for p in sup.get(f"/api/alarms/cam-1/{alarm}").json()["photos"])
    with Store.open(data) as s:
        [rec] = audit.records(s, what="release hold")
    assert rec["who"] == "sam" and rec["why"] == "case closed by the police"


def test_disabling_an_account_ends_its_session_at_once(gw):
    from gateway.governance.users import disable_user

    data, app, _ = gw
    op = login(app, "olivia")
    assert op.get("/api/alarms").status_code == 200
    with Store.open(data) as s:
        disable_user(s, "olivia", "test", 1)
    assert op.get("/api/alarms").status_code == 401
    assert client(app).post("/api/session", json={"name": "olivia", "password": PASSWORDS["olivia"]}).status_code == 401
