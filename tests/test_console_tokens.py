"""Service accounts' API tokens against the real console: scopes, revocation, hashing, audit, the CLI."""

import hashlib
import time

import pytest
from fastapi.testclient import TestClient

from gateway.console import create_app
from gateway.governance import audit
from gateway.governance.users import (NotAllowed, UserError, authenticate_token, create_token, list_tokens, may_grant,
                                      revoke_token)
from gateway.storage import sqldb
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


def client(app, token=None):
    c = TestClient(app, base_url="http://testserver", follow_redirects=False)
    if token:
        c.headers["Authorization"] = f"Bearer {token}"
    return c


def login(app, name):
    c = client(app)
    r = c.post("/api/session", json={"name": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


def token(data, name, *scopes):
    with Store.open(data) as s:
        return create_token(s, name, scopes, "sam", int(time.time() * 1000), "supervisor")


def records(data, what):
    with Store.open(data) as s:
        return audit.records(s, what=what)


def test_an_alarms_read_token_reads_the_queue_and_one_alarm_but_no_photo(gw):
    data, app, alarm = gw
    arc = client(app, token(data, "arc-sw", "alarms:read"))
    queue = arc.get("/api/alarms")
    assert queue.status_code == 200
    assert [(a["site"], a["code"], a["photos"]) for a in queue.json()] == [("Storgatan 12", "intrusion", 3)]
    one = arc.get(f"/api/alarms/cam-1/{alarm}")
    assert one.status_code == 200 and len(one.json()["photos"]) == 3
    assert arc.get(one.json()["photos"][0]["url"]).status_code == 403
    assert records(data, "view image") == []


def test_a_photos_token_gets_a_photo_only_through_its_alarm_and_each_read_is_audited_under_its_name(gw):
    data, app, alarm = gw
    other = ingest_alarm(data)
    url = f"/api/alarms/cam-1/{alarm}/photos/"
    with Store.open(data) as s:
        image = next(p["id"] for p in s.images.list("cam-1") if p["alarm_id"] == alarm)
        jpeg = s.images.read(image)
    arc = client(app, token(data, "arc-photos", "photos:read"))
    assert arc.get(f"/api/alarms/cam-1/{other}/photos/{image}").status_code == 404
    assert arc.get(f"/api/alarms/cam-2/{alarm}/photos/{image}").status_code == 404
    assert arc.get(f"/images/{image}").status_code == 404
    assert arc.get(f"/alarms/cam-1/{alarm}/photos/{image}.jpg").status_code == 303  # pages take no tokens
    assert records(data, "view image") == []
    r = arc.get(url + image)
    assert r.status_code == 200 and r.content == jpeg and "no-store" in r.headers["cache-control"]
    [rec] = records(data, "view image")
    person = login(app, "olivia")
    assert person.get(url + image).status_code == 200
    [mine] = [r for r in records(data, "view image") if r["who"] == "olivia"]
    assert rec["who"] == "token:arc-photos" and rec["subject"] == image and rec["detail"]["role"] == "service"
    assert {k: v for k, v in rec.items() if k not in ("who", "seq", "at_ms", "detail", "hash", "prev_hash")} == \
        {k: v for k, v in mine.items() if k not in ("who", "seq", "at_ms", "detail", "hash", "prev_hash")}
    # like an operator, a token no longer sees the photos of a closed alarm
    assert person.post(f"/api/alarms/cam-1/{alarm}/close", json={"outcome": "test"}).status_code == 200
    assert arc.get(url + image).status_code == 403


def test_a_token_never_does_more_than_its_scope(gw):
    data, app, alarm = gw
    both = client(app, token(data, "arc-both", "alarms:read", "photos:read"))
    for path in ("/api/devices", "/api/activity", "/api/audit", "/api/users", "/api/tokens", "/api/me"):
        assert both.get(path).status_code == 403, path
    both.headers["X-CSRF-Token"] = "anything"
    assert both.post(f"/api/alarms/cam-1/{alarm}/acknowledge").status_code == 403
    assert both.post(f"/api/alarms/cam-1/{alarm}/hold", json={"reason": "r", "case": "c"}).status_code == 403
    assert both.post("/api/tokens", json={"name": "mine", "scopes": ["alarms:read"]}).status_code == 403
    assert both.delete("/api/session").status_code == 403
    assert both.get("/alarms").status_code == 303  # the HTML console ignores the header: log in first
    photos_only = client(app, token(data, "arc-p", "photos:read"))
    assert photos_only.get("/api/alarms").status_code == 403
    assert photos_only.get(f"/api/alarms/cam-1/{alarm}").status_code == 403
    with Store.open(data) as s, pytest.raises(UserError):
        create_token(s, "root", ["admin"], "sam", 0, "supervisor")


def test_a_revoked_or_unknown_token_gets_401_and_only_the_hash_is_stored(gw):
    data, app, _ = gw
    t = token(data, "arc-sw", "alarms:read")
    arc = client(app, t)
    assert arc.get("/api/alarms").status_code == 200
    with Store.open(data) as s:
        row = s.db.execute("SELECT * FROM api_tokens").fetchone()
        assert t not in [str(v) for v in dict(row).values()]
        assert dict(row)["token_sha256"] == hashlib.sha256(t.encode()).hexdigest()
        revoke_token(s, "arc-sw", "test-admin", int(time.time() * 1000))
    r = arc.get("/api/alarms")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    for bad in (t[:-1] + ("A" if t[-1] != "A" else "B"), "vct_", "nonsense"):
        assert client(app, bad).get("/api/alarms").status_code == 401
    with Store.open(data) as s, pytest.raises(UserError):
        create_token(s, "arc-sw", ["alarms:read"], "sam", 0, "supervisor")  # a revoked name stays taken


def test_a_supervisor_creates_tokens_the_admin_lists_and_revokes_them_and_every_change_is_audited(gw):
    data, app, _ = gw
    sam, adam = login(app, "sam"), login(app, "adam")
    r = sam.post("/api/tokens", json={"name": "arc-sw", "scopes": ["alarms:read", "photos:read"]})
    assert r.status_code == 200 and r.json()["scopes"] == ["alarms:read", "photos:read"]
    t = r.json()["token"]
    assert t.startswith("vct_") and len(t) >= 40
    assert sam.post("/api/tokens", json={"name": "x", "scopes": ["alarms:write"]}).status_code == 400
    assert sam.post("/api/tokens", json={"name": "arc-sw", "scopes": ["alarms:read"]}).status_code == 400
    listed = adam.get("/api/tokens").json()
    assert [(x["name"], x["scopes"], x["created_by"], x["revoked_at_ms"]) for x in listed] == \
        [("arc-sw", ["alarms:read", "photos:read"], "sam", None)]
    assert t not in adam.get("/api/tokens").text
    assert client(app, t).get("/api/alarms").status_code == 200
    assert adam.get("/api/tokens").json()[0]["last_used_ms"] is not None
    page = adam.get("/users")
    assert page.status_code == 200 and "arc-sw" in page.text and "alarms:read, photos:read" in page.text
    assert t not in page.text
    assert adam.delete("/api/tokens/arc-sw").status_code == 200
    assert "revoked" in adam.get("/users").text
    assert adam.delete("/api/tokens/arc-sw").status_code == 404
    assert sam.delete("/api/tokens/arc-sw").status_code == 403
    assert client(app, t).get("/api/alarms").status_code == 401
    recs = records(data, "configure token")
    assert sorted((r["who"], r["subject"], r["why"]) for r in recs) == [
        ("adam", "token:arc-sw", "API token arc-sw revoked"),
        ("sam", "token:arc-sw", "API token arc-sw created with scopes alarms:read photos:read")]
    assert [r["detail"]["role"] for r in recs if r["who"] == "sam"] == ["supervisor"]
    assert all(t not in str(r) for r in recs)


def test_no_one_gives_a_token_a_scope_their_role_does_not_hold_so_an_admin_reads_no_photo_through_one(gw):
    data, app, alarm = gw
    adam = login(app, "adam")
    assert adam.get("/api/alarms").status_code == 403
    for scopes in (["alarms:read", "photos:read"], ["alarms:read"], ["photos:read"]):
        r = adam.post("/api/tokens", json={"name": "backdoor", "scopes": scopes})
        assert r.status_code == 403 and "admin role may not create API tokens" in r.json()["detail"], r.text
    for name in ("olivia", "aud"):  # an operator holds the scopes but does not delegate them; an auditor holds none
        assert login(app, name).post("/api/tokens", json={"name": "x", "scopes": ["alarms:read"]}).status_code == 403
    cli = vericam("users", "token", "create", "backdoor", "--scope", "alarms:read,photos:read", "--data", data,
                  "--by", "adam")
    assert cli.returncode == 3 and "admin role may not create API tokens" in cli.stderr and "vct_" not in cli.stdout
    assert adam.get("/api/tokens").json() == [] and records(data, "configure token") == []
    # the rule itself: a creator role that lacks a scope's own permission cannot give it
    with pytest.raises(NotAllowed, match="admin role"):
        may_grant("admin", ["photos:read"])
    may_grant("supervisor", ["alarms:read", "photos:read"])


def test_the_cli_prints_a_token_once_lists_and_revokes_it(gw):
    data, app, _ = gw
    # A supervisor creates tokens; the admin lists and revokes them, on the command line as in the console.
    refused = vericam("users", "token", "create", "arc-sw", "--scope", "alarms:read", "--data", data)
    assert refused.returncode == 3 and "--by SUPERVISOR" in refused.stderr
    refused = vericam("users", "token", "create", "arc-sw", "--scope", "alarms:read", "--data", data, "--by", "olivia")
    assert refused.returncode == 3 and "operator role may not create API tokens" in refused.stderr
    made = vericam("users", "token", "create", "arc-sw", "--scope", "alarms:read,photos:read", "--data", data,
                   "--by", "sam")
    assert made.returncode == 0, made.stderr
    t = made.stdout.strip()
    assert t.startswith("vct_") and "shown only this once" in made.stderr
    assert vericam("users", "token", "list", "--data", data, "--by", "sam").returncode == 3
    listed = vericam("users", "token", "list", "--data", data, "--by", "adam")
    assert "arc-sw" in listed.stdout and "alarms:read,photos:read" in listed.stdout and t not in listed.stdout
    assert client(app, t).get("/api/alarms").status_code == 200
    bad = vericam("users", "token", "create", "x", "--scope", "alarms:write", "--data", data, "--by", "sam")
    assert bad.returncode == 2 and "alarms:read" in bad.stderr
    assert vericam("users", "token", "revoke", "arc-sw", "--data", data, "--by", "adam").returncode == 0
    assert client(app, t).get("/api/alarms").status_code == 401
    assert "revoked" in vericam("users", "token", "list", "--data", data, "--by", "adam").stdout
    [made_rec, revoked_rec] = sorted(records(data, "configure token"), key=lambda r: r["seq"])
    assert made_rec["who"] == "sam" and revoked_rec["why"] == "API token arc-sw revoked"


def test_a_token_lives_and_dies_the_same_on_both_engines(tmp_path, engine):
    data = tmp_path / "gw"
    if engine:
        sqldb.bind(data, engine)
    init(data)
    with Store.open(data) as s:
        t = create_token(s, "arc-sw", ["photos:read,alarms:read"], "sam", 1_000, "supervisor")
        assert authenticate_token(s, t, 2_000) == ("arc-sw", frozenset({"alarms:read", "photos:read"}))
        [row] = list_tokens(s)
        assert (row["scopes"], row["created_by"], row["last_used_ms"], row["revoked_at_ms"]) == \
            (["alarms:read", "photos:read"], "sam", 2_000, None)
        authenticate_token(s, t, 30_000)  # within the minute: not written again
        assert list_tokens(s)[0]["last_used_ms"] == 2_000
        authenticate_token(s, t, 62_000)
        assert list_tokens(s)[0]["last_used_ms"] == 62_000
        revoke_token(s, "arc-sw", "adam", 3_000)
        assert authenticate_token(s, t, 4_000) is None
        assert list_tokens(s)[0]["revoked_at_ms"] == 3_000
        with pytest.raises(UserError):
            revoke_token(s, "arc-sw", "adam", 5_000)
