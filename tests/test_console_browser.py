"""The operator console in a real headless Chromium, on a real burglary from the simulator.

Mosquitto, the gateway process and a MicroPython device play the burglary; the console serves
the same data directory. An operator watches the queue as the alarm arrives and opens its
photos, a supervisor places a police hold and downloads the export, and an auditor finds the
views in the audit trail. Screenshots land in tests/artifacts/console/.
"""

import hashlib
import io
import shutil
import time
import zipfile
from pathlib import Path

import pytest

from gateway.console.server import ConsoleServer
from gateway.storage.store import Store
from gateway.governance.users import add_user

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).parent / "artifacts" / "console"
PASSWORDS = {"olivia": "operator-pass-1", "sam": "supervisor-pass-1", "aud": "auditor-pass-1"}
ROLES = {"olivia": "operator", "sam": "supervisor", "aud": "auditor"}

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium (tools/ensure-chromium)")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from simulator.demo import DEVICE
    from simulator.stack import Stack

    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    with Stack(tmp_path_factory.mktemp("browser") / "run") as stack:
        with Store.open(stack.gateway_dir) as store:
            for name, role in ROLES.items():
                add_user(store, name, role, PASSWORDS[name], "test-setup", int(time.time() * 1000))
        # Secure cookies, as in production: Chromium keeps them on http://127.0.0.1 (a secure context).
        console = ConsoleServer(stack.gateway_dir, "127.0.0.1", 0, secure_cookies=True).start()
        dev = stack.add_device(DEVICE)
        dev.boot()
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                yield stack, console.url.rstrip("/"), browser, DEVICE
            finally:
                browser.close()
                console.stop()


def log_in(browser, url, name):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return ctx, page


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_an_alarm_from_arrival_to_police_export_in_chromium(scene):
    from simulator.demo import play_burglary

    stack, url, browser, device = scene

    # 1. The operator logs in and watches the empty queue.
    op_ctx, op = log_in(browser, url, "olivia")
    assert op.url.endswith("/alarms")
    assert "No alarms" in op.inner_text("#queue-rows")
    op.evaluate("window.__sameDocument = true")  # gone if the page reloads

    # 2. A burglary happens; its alarm and 3 photos show up without a reload.
    play_burglary(stack, device)
    op.wait_for_selector("tr.alarm td.photos:text-is('3')", timeout=20_000)
    assert op.evaluate("window.__sameDocument") is True
    row = op.inner_text("tr.alarm").lower()
    assert "demo-site" in row and "intrusion" in row
    shot(op, "1-queue-operator")

    # 3. The operator opens the alarm: 3 photos, newest first, decrypted on request.
    op.click("tr.alarm a.button")
    op.wait_for_selector("li.photo img")
    op.wait_for_function("[...document.querySelectorAll('li.photo img')].every(i => i.complete && i.naturalWidth > 0)")
    assert op.locator("li.photo img").count() == 3
    alarm_path = op.url.split(url, 1)[1].split("?")[0]
    _, _, dev_id, alarm_id = alarm_path.split("/")
    srcs = [op.locator("li.photo img").nth(i).get_attribute("src") for i in range(3)]
    assert all(s.startswith(f"{alarm_path}/photos/") for s in srcs)
    photo = op.request.get(url + srcs[0])
    assert photo.status == 200 and photo.headers["cache-control"].startswith("no-store")
    assert photo.body()[:3] == b"\xff\xd8\xff"
    op.click("text=Acknowledge")
    op.wait_for_selector("#state:text-is('acknowledged')")
    shot(op, "2-alarm-operator")

    # Negatives: the same photo under another alarm's URL, or a made-up one, is not there.
    image_id = srcs[0].rsplit("/", 1)[1].removesuffix(".jpg")
    assert op.request.get(f"{url}/alarms/{dev_id}/{'0' * 16}/photos/{image_id}.jpg").status == 404
    assert op.request.get(f"{url}/alarms/{dev_id}/{alarm_id}/photos/{'0' * 32}.jpg").status == 404
    assert op.request.get(f"{url}/api/alarms/{dev_id}/{alarm_id}/hold").status == 405
    op_ctx.close()

    # Logged out: nothing but the login page.
    anon = browser.new_context()
    r = anon.request.get(url + srcs[0])
    assert r.url.startswith(f"{url}/login") and "image" not in r.headers["content-type"]
    assert anon.request.get(f"{url}/api/alarms/{dev_id}/{alarm_id}").status == 401
    anon.close()

    # 4. The supervisor places a police hold and downloads the export.
    sup_ctx, sup = log_in(browser, url, "sam")
    sup.goto(url + alarm_path)
    sup.fill("form[action$='/hold'] input[name=reason]", "Burglary reported to the police")
    sup.fill("form[action$='/hold'] input[name=case]", "5000-K123456-26")
    sup.click("text=Place police hold")
    sup.wait_for_selector("text=Download police export")
    assert "5000-K123456-26" in sup.inner_text(".police")
    shot(sup, "3-alarm-supervisor-hold")
    with sup.expect_download() as dl:
        sup.click("#export")
    bundle = ARTIFACTS / dl.value.suggested_filename
    dl.value.save_as(bundle)
    z = zipfile.ZipFile(io.BytesIO(bundle.read_bytes()))
    for line in z.read("MANIFEST.sha256").decode().splitlines():
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(z.read(name)).hexdigest() == digest
    assert len([n for n in z.namelist() if n.endswith(".jpg")]) == 3
    assert "olivia" in z.read("chain-of-custody.json").decode()
    sup_ctx.close()

    # 5. The auditor sees the views in the audit trail, and cannot see a photo.
    aud_ctx, aud = log_in(browser, url, "aud")
    assert aud.url.endswith("/audit")
    assert "Hash chain intact" in aud.inner_text("main")
    aud.select_option("select[name=what]", "view image")
    aud.click("form.filters button")
    aud.wait_for_load_state()
    views = [aud.locator("tr.what-view-image").nth(i).locator("td") for i in range(aud.locator("tr.what-view-image").count())]
    seen = [(v.nth(2).inner_text(), v.nth(5).inner_text()) for v in views]  # (who, image)
    # no-store: every time a page shows a photo it is fetched again, and counted again
    assert len([who for who, _ in seen if who == "olivia"]) >= 4  # the page (twice) + the one fetched directly
    assert len([who for who, _ in seen if who == "sam"]) >= 3  # the supervisor saw them before the hold
    assert {img for _, img in seen} == {s.rsplit("/", 1)[1].removesuffix(".jpg") for s in srcs}
    shot(aud, "4-audit-auditor")
    page = aud.goto(url + srcs[0])
    assert page.status == 403
    assert aud.request.get(f"{url}/api/alarms/{dev_id}/{alarm_id}/photos/{image_id}").status == 403
    aud.goto(f"{url}/audit")
    assert "police export" in aud.inner_text("table.audit") and "place hold" in aud.inner_text("table.audit")
    aud_ctx.close()


def test_devices_page_shows_supervision(scene):
    stack, url, browser, device = scene
    ctx, page = log_in(browser, url, "olivia")
    page.goto(f"{url}/devices")
    row = page.inner_text("tbody tr")
    assert device in row and ("online" in row or "offline since" in row)
    shot(page, "5-devices")
    page.goto(f"{url}/activity")
    page.select_option("select[name=site]", "demo-site")
    page.fill("input[name=from]", "2020-01-01T00:00")
    page.click("form.filters button")
    page.wait_for_load_state()
    kinds = page.locator("tbody tr td:nth-child(4)").all_inner_texts()
    assert kinds and "Nothing in this range." not in kinds  # the boot config event at least (more after a burglary)
    shot(page, "6-activity")
    ctx.close()
