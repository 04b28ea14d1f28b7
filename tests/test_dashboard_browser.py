"""The dashboard in a real browser: headless Debian chromium (driven by Playwright, no browser download)
against a real uvicorn server fed by a thread publishing synthetic live records. The page must show
the floor plan, go live, raise the jammer alarm banner when the alarm arrives, and clear it again; for a
characterised (spectral) alarm it must show the per-node spectrum strip with the affected sub-bands, the
likelihood heat map with the 90 % region, what the interference is and what to do, and let an operator,
and only an operator, acknowledge it."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from central.events import EventBus
from central.twin.site import resolve_site
from tests.central_helpers import OPERATOR_TOKEN, VIEWER_TOKEN
from tests.dashboard_server import (
    ALLOCATIONS,
    JAMMER_XY,
    DashboardServer,
    alarm,
    interference,
    nodes,
    snapshot,
)

CHROMIUM = os.environ.get("RFTWIN_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"{CHROMIUM} not found: install Debian's chromium (`make apt` does)",
    ),  # fmt: skip
]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]  # fmt: skip
STALE = frozenset({"su03"})
SATURATED = frozenset({"su10"})  # the SU nearest the jammer
SPOOL_FULL = frozenset({"su05"})  # its disk is full: it drops its oldest readings


class Publisher(threading.Thread):
    """Publishes a snapshot every ``period_s`` (and node health every few), normal or jammed."""

    def __init__(self, bus: EventBus, site, period_s: float = 0.25, jam_subbands: tuple[int, ...] = ()):
        super().__init__(name="dashboard-publisher", daemon=True)
        self.bus, self.site, self.period_s, self.jam_subbands = bus, site, period_s, jam_subbands
        self.rng = np.random.default_rng(4)
        self.jammer = threading.Event()
        self.stop = threading.Event()
        self.last = None
        self.count = 0

    def publish_once(self) -> None:
        now = time.time_ns()
        jam = self.jammer.is_set()
        sat = SATURATED if jam else frozenset()
        self.last = snapshot(self.site, now, self.rng, jammer=jam, stale=STALE, saturated=sat,
                             jam_subbands=self.jam_subbands)  # fmt: skip
        self.bus.publish("snapshot", self.last.to_dict())
        if self.count % 4 == 0:
            self.bus.publish(
                "nodes",
                nodes(
                    self.site,
                    now,
                    stale=STALE,
                    saturated=sat,
                    records=self.count + 500,
                    spool_full=SPOOL_FULL,
                ),  # fmt: skip
            )
        self.count += 1

    def run(self) -> None:
        while not self.stop.wait(self.period_s):
            self.publish_once()


@pytest.fixture()
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def page_errors(page) -> list[str]:
    """The page's uncaught exceptions and console errors, collected as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors

def test_dashboard_shows_a_jammer_alarm(browser, tmp_path):
    site = resolve_site("factory-hall-a")
    bus = EventBus()
    rng = np.random.default_rng(3)
    with DashboardServer(bus, site) as srv:
        # two minutes of normal history before anyone looks (served to the page by the recorder)
        now = time.time_ns()
        for k in range(240, 0, -1):
            bus.publish("snapshot", snapshot(site, now - k * int(0.5e9), rng, stale=STALE).to_dict())
        pub = Publisher(bus, site)
        pub.publish_once()
        pub.start()
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors = page_errors(page)
        try:
            # no session: the page sends the browser to the login; a wrong token is refused there
            page.goto(srv.url + "/")
            page.wait_for_url(srv.url + "/login")
            page.fill("#token", "rtv_not-a-token")
            page.click("#login-button")
            page.wait_for_selector("#login-error:not([hidden])", timeout=10_000)
            assert "wrong token" in page.inner_text("#login-error")
            errors.clear()  # the browser logs the refused login (401) as a failed resource load
            page.fill("#token", VIEWER_TOKEN)
            page.click("#login-button")
            page.wait_for_url(srv.url + "/")
            (cookie,) = page.context.cookies()
            assert (
                cookie["name"] == "rftwin_session" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            )
            assert page.evaluate("document.cookie") == ""  # no script in the page can read the session
            page.wait_for_selector("#session-user:text('control-room (viewer)')", timeout=10_000)
            # live and drawn: hall, 6 obstacles, 12 SUs coloured from the snapshots, TXs, node table
            page.wait_for_selector("#conn-status[data-state='open']", timeout=10_000)
            page.wait_for_selector(".su-marker[data-su='su01'][data-state='ok']", timeout=10_000)
            page.wait_for_selector("#node-table tbody tr[data-node]", timeout=10_000)
            assert page.locator(".su-marker").count() == 12
            assert page.locator("#map .obstacle").count() == 6
            assert page.locator("#map .obstacle[data-obstacle='line-1']").count() == 1
            assert page.locator(".tx-marker").count() == 3
            assert page.locator(".su-marker[data-su='su03']").get_attribute("data-state") == "stale"
            full = page.locator("#node-table tr[data-spool='full']")
            assert full.count() == 1 and full.get_attribute("data-node") == "su05"
            assert full.locator(".spool-full").inner_text() == "spool full"
            assert page.locator("#alarm-banner").get_attribute("data-state") == "none"
            assert page.locator("#alarm-banner").is_hidden()
            assert page.locator("#jammer-marker").get_attribute("data-state") == "none"
            assert page.locator("#history path.max-line").count() == 1  # history drawn

            # the jammer appears: anomalous snapshots, then the detector's alarm
            pub.jammer.set()
            time.sleep(3 * pub.period_s)
            jam = pub.last
            raised = alarm(1, jam, jam.t_ns - int(2e9))
            assert len(raised.affected_sus) >= 3 and "su10" in raised.affected_sus
            bus.publish("alarm", raised.to_dict())

            page.wait_for_selector("#alarm-banner[data-state='active']", timeout=10_000)
            banner = page.locator("#alarm-banner")
            assert banner.is_visible()
            assert banner.get_attribute("data-alarm-id") == "1"
            shown = page.locator("#alarm-sus .alarm-su").evaluate_all("els => els.map(e => e.dataset.su)")
            assert shown == list(raised.affected_sus)
            assert "residual" in page.inner_text("#alarm-kind").lower()
            assert f"x {JAMMER_XY[0]:.1f} m" in page.inner_text("#alarm-position")
            assert page.inner_text("#alarm-score").startswith(f"{raised.peak_score:.2f}")
            assert page.locator("#jammer-marker").get_attribute("data-state") == "active"
            assert page.locator(".su-marker.affected").count() == len(raised.affected_sus)
            # an alarm without a characterisation (wideband evidence only) keeps the plain banner
            assert page.locator("#alarm-interference").is_hidden()
            assert page.locator("#heatmap").get_attribute("data-state") == "none"
            assert page.locator("#region-outline").get_attribute("data-state") == "none"
            assert page.locator("#alarm-ack-button").is_hidden()  # a viewer's session: no button
            assert page.locator("#spectrum-strip").get_attribute("data-affected") == ""
            page.wait_for_selector(".su-marker[data-su='su10'][data-state='saturated']", timeout=5_000)
            page.wait_for_selector("#node-table tr[data-node='su10'][data-status='saturated']", timeout=5_000)
            assert page.locator("#node-table tbody tr[data-node]").count() == 12
            assert page.locator("#node-table tr[data-node='su03']").get_attribute("data-status") == "stale"
            assert page.locator("#alarm-log .alarm-entry[data-state='active']").count() == 1
            page.wait_for_selector("#history .anomalous-band", timeout=5_000)

            time.sleep(1.0)  # let a few more jammed windows reach the history plot
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            (ROOT / "out").mkdir(exist_ok=True)
            shutil.copy(shot, ROOT / "out" / "dashboard.png")

            # the jammer goes away and the alarm clears: the banner hides, the log keeps it
            pub.jammer.clear()
            bus.publish("alarm", alarm(1, jam, raised.start_ns, "cleared", time.time_ns()).to_dict())
            page.wait_for_selector("#alarm-banner[data-state='none']", state="attached", timeout=10_000)
            assert page.locator("#alarm-banner").is_hidden()
            page.wait_for_selector("#jammer-marker[data-state='none']", state="attached", timeout=5_000)
            assert page.locator("#alarm-log .alarm-entry[data-state='cleared']").count() == 1

            # logging out ends the session: the page goes to the login, and the dashboard stays shut
            page.click("#logout")
            page.wait_for_url(srv.url + "/login")
            page.goto(srv.url + "/")
            page.wait_for_url(srv.url + "/login")
        finally:
            pub.stop.set()
            pub.join(5)
            page.close()
    assert errors == []


def log_in(page, url: str, token: str, who: str) -> None:
    page.goto(url + "/login")
    page.fill("#token", token)
    page.click("#login-button")
    page.wait_for_url(url + "/")
    page.wait_for_selector(f"#session-user:text('{who}')", timeout=10_000)
    page.wait_for_selector("#conn-status[data-state='open']", timeout=10_000)


def test_spectral_alarm_strip_heat_map_and_acknowledgement(browser):
    """A characterised narrowband alarm: strip, heat map, region, banner; a viewer cannot acknowledge, an
    operator can, and every page shows who did."""
    site = resolve_site("factory-hall-a")
    plan = site.band_plan
    bus = EventBus()
    jam_sb = (9, 10)  # idle sub-bands (no legitimate TX is scheduled in them)
    busy = sorted({sb for sbs in ALLOCATIONS.values() for sb in sbs})
    assert not set(jam_sb) & set(busy)
    with DashboardServer(bus, site) as srv:
        pub = Publisher(bus, site, jam_subbands=jam_sb)
        pub.publish_once()
        pub.start()
        operator = browser.new_page(viewport={"width": 1440, "height": 1400})
        errors = page_errors(operator)
        viewer_context = browser.new_context(viewport={"width": 1280, "height": 1000})
        viewer = viewer_context.new_page()
        try:
            log_in(operator, srv.url, OPERATOR_TOKEN, "shift-lead (operator)")
            # the spectrum strip: one plot per SU, one column per sub-band of the band plan, busy vs idle
            operator.wait_for_selector("#spectrum-strip[data-state='live']", timeout=10_000)
            assert operator.locator(".spectrum-su").count() == 12
            su01 = operator.locator(".spectrum-su[data-su='su01']")
            assert su01.locator(".sb").count() == plan.subbands
            assert (
                su01.locator(".sb[data-busy='true']").evaluate_all("els => els.map(e => +e.dataset.subband)")
                == busy
            )
            assert operator.locator(".spectrum-su[data-su='su03']").get_attribute("data-state") == "stale"
            assert operator.locator(".spectrum-su[data-su='su03'] .sb-measured").count() == 0
            assert su01.locator(".sb-measured").count() == plan.subbands
            assert su01.locator(".sb-expected").count() == plan.subbands
            assert operator.locator(".sb[data-affected='true']").count() == 0
            assert f"{plan.subbands} sub-bands" in operator.inner_text("#spectrum-band")
            assert operator.locator("#alarm-banner").is_hidden()

            # a 10 dBm narrowband jammer in sub-bands 9-10 near JAMMER_XY, then its characterised alarm
            pub.jammer.set()
            time.sleep(3 * pub.period_s)
            jam = pub.last
            su10 = next(s for s in jam.sus if s.su_id == "su10")
            assert (
                su10.subband_measured_dbm[9] - su10.subband_predicted_dbm[9] > 30
            )  # what the strip should show
            inf = interference(site, jam_sb, eirp_dbm=10.2, time_pattern="duty-cycled", duty=0.3)
            raised = srv.store.open_alarm("residual", jam.t_ns - int(2e9), jam.score, ("su09", "su10", "su11"),
                                          JAMMER_XY, inf)  # fmt: skip
            bus.publish("alarm", raised.to_dict())

            operator.wait_for_selector(
                f"#alarm-banner[data-state='active'][data-alarm-id='{raised.id}']", timeout=10_000
            )
            # the banner: class, sub-bands, EIRP, time pattern and the countermeasure
            assert operator.locator("#alarm-interference").is_visible()
            assert operator.locator("#alarm-class").get_attribute("data-class") == "narrowband"
            assert "Narrowband jammer" in operator.inner_text("#alarm-kind")
            assert (
                operator.inner_text("#alarm-subbands") == "sub-bands 9–10 (PRBs 153–186)" == inf.subbands_text
            )
            assert operator.inner_text("#alarm-eirp") == "10.2 dBm"
            assert operator.inner_text("#alarm-pattern") == "duty-cycled (on 30 % of the time)"
            assert operator.locator("#alarm-mimics-item").is_hidden()
            assert operator.inner_text("#alarm-countermeasure") == inf.countermeasure
            assert "exclude sub-bands 9–10" in inf.countermeasure
            assert "unacknowledged" in operator.inner_text("#alarm-ack")
            # the strip marks the affected sub-bands in every SU's plot, and the SUs the alarm names
            operator.wait_for_selector("#spectrum-strip[data-affected='9,10']", timeout=5_000)
            marked = operator.locator(".spectrum-su[data-su='su10'] .sb[data-affected='true']")
            assert marked.evaluate_all("els => els.map(e => +e.dataset.subband)") == list(jam_sb)
            assert operator.locator(".sb[data-affected='true']").count() == 12 * len(jam_sb)
            assert operator.locator(".spectrum-su[data-affected='true']").evaluate_all(
                "els => els.map(e => e.dataset.su)"
            ) == ["su09", "su10", "su11"]
            operator.wait_for_function(  # the jammed windows reach the page: measured far above expected
                "() => +document.querySelector(\".spectrum-su[data-su='su10'] .sb[data-subband='9']\").dataset.excess > 30",
                timeout=5_000)  # fmt: skip
            assert float(operator.locator(".spectrum-su[data-su='su10'] .sb[data-subband='3']")
                         .get_attribute("data-excess")) < 6  # fmt: skip

            # the heat map of the likelihood under the floor plan, the 90 % region, the most likely position
            heat = operator.locator("#heatmap")
            assert heat.get_attribute("data-state") == "active" and heat.get_attribute(
                "data-alarm-id"
            ) == str(raised.id)
            assert (heat.get_attribute("data-rows"), heat.get_attribute("data-cols")) == ("40", "40")
            peak = [float(v) for v in heat.get_attribute("data-peak-m").split(",")]
            assert abs(peak[0] - JAMMER_XY[0]) <= 1 and abs(peak[1] - JAMMER_XY[1]) <= 1
            # painted: strong at the jammer's cell, nothing in the far corner (pixel rows run top-down)
            rgba = operator.evaluate("""async ([cells]) => {
                const img = new Image(); img.src = document.getElementById('heatmap').getAttribute('href');
                await img.decode();
                const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
                const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
                return cells.map(([x, y]) => Array.from(ctx.getImageData(x, img.height - 1 - y, 1, 1).data));
            }""", [[[int(JAMMER_XY[0]), int(JAMMER_XY[1])], [39, 39]]])  # fmt: skip
            assert rgba[0][3] > 150 and rgba[0][0] > 150 and rgba[1][3] == 0
            # the heat layer lies under the obstacles and markers (drawn before them)
            order = operator.evaluate("""() => { const m = document.getElementById('map');
                const all = [...m.querySelectorAll('#heatmap, #layer-obstacles, #region-outline, #layer-sus')];
                return all.map(e => e.id); }""")
            assert order == ["heatmap", "layer-obstacles", "region-outline", "layer-sus"]
            outline = operator.locator("#region-outline")
            assert outline.get_attribute("data-state") == "active"
            assert int(outline.get_attribute("data-cells")) == len(inf.region_m) > 1
            assert outline.get_attribute("d").count("M") >= 4  # a closed outline has at least four edges
            box = outline.bounding_box()
            assert box is not None and box["width"] > 10 and box["height"] > 10
            assert operator.locator("#legend-likelihood").is_visible()
            assert operator.locator("#jammer-marker").get_attribute("data-state") == "active"
            assert f"x {JAMMER_XY[0]:.1f} m" in operator.inner_text("#alarm-position")

            # a viewer sees the same banner without a usable button; forcing a request gets a clear 403
            log_in(viewer, srv.url, VIEWER_TOKEN, "control-room (viewer)")
            viewer.wait_for_selector(f"#alarm-banner[data-alarm-id='{raised.id}']", timeout=10_000)
            assert viewer.inner_text("#alarm-countermeasure") == inf.countermeasure
            assert viewer.locator("#alarm-ack-button").is_hidden()
            viewer.evaluate("document.getElementById('alarm-ack-button').click()")  # as if it were shown
            viewer.wait_for_selector("#alarm-ack-error:not([hidden])", timeout=10_000)
            msg = viewer.inner_text("#alarm-ack-error")
            assert (
                msg.startswith("Not allowed to acknowledge") and "viewer session does not allow this" in msg
            )
            assert srv.store.alarm(raised.id).acknowledged_by is None

            # the operator acknowledges with the button: the banner says who, the button goes
            (ROOT / "out").mkdir(exist_ok=True)
            operator.screenshot(path=str(ROOT / "out" / "dashboard-spectral.png"), full_page=True)
            assert operator.locator("#alarm-ack-button").is_visible()
            operator.click("#alarm-ack-button")
            operator.wait_for_selector("#alarm-banner[data-acknowledged='yes']", timeout=10_000)
            assert "acknowledged by shift-lead" in operator.inner_text("#alarm-ack")
            assert operator.locator("#alarm-ack-button").is_hidden()
            assert operator.locator("#alarm-ack-error").is_hidden()
            assert srv.store.alarm(raised.id).acknowledged_by == "shift-lead"
            # ... and every other page learns it from the stream's alarm event
            viewer.wait_for_selector("#alarm-banner[data-acknowledged='yes']", timeout=10_000)
            assert "acknowledged by shift-lead" in viewer.inner_text("#alarm-ack")
            assert viewer.locator("#alarm-ack-error").is_hidden()
            assert "ack shift-lead" in operator.inner_text("#alarm-log")

            # cleared: banner, heat map, region and the strip's marks go
            pub.jammer.clear()
            bus.publish("alarm", srv.store.clear_alarm(raised.id, time.time_ns()).to_dict())
            operator.wait_for_selector("#alarm-banner[data-state='none']", state="attached", timeout=10_000)
            assert operator.locator("#alarm-banner").is_hidden()
            assert operator.locator("#heatmap").get_attribute("data-state") == "none"
            assert operator.locator("#region-outline").get_attribute("data-state") == "none"
            operator.wait_for_selector("#spectrum-strip[data-affected='']", timeout=5_000)
            assert operator.locator(".sb[data-affected='true']").count() == 0

            # a deceptive emitter following tx2's allocation: the banner names it; without a likelihood map
            # there is no heat map, but the region is still outlined
            inf = interference(
                site, ALLOCATIONS["tx2"], "deceptive", eirp_dbm=None, mimics_tx="tx2", with_likelihood=False
            )
            deceptive = srv.store.open_alarm("residual", time.time_ns(), 5.0, ("su10",), JAMMER_XY, inf)
            bus.publish("alarm", deceptive.to_dict())
            operator.wait_for_selector(f"#alarm-banner[data-alarm-id='{deceptive.id}']", timeout=10_000)
            assert (
                operator.inner_text("#alarm-mimics") == "TX tx2"
                and operator.locator("#alarm-mimics-item").is_visible()
            )
            assert operator.inner_text("#alarm-eirp") == "not estimated"
            assert operator.inner_text("#alarm-pattern") == "continuous"
            assert "Deceptive emitter" in operator.inner_text("#alarm-kind")
            assert operator.locator("#heatmap").get_attribute("data-state") == "none"
            assert operator.locator("#region-outline").get_attribute("data-state") == "active"
            assert operator.locator("#alarm-ack-button").is_visible()  # a new alarm, not yet acknowledged
            operator.wait_for_selector("#spectrum-strip[data-affected='6,7']", timeout=5_000)
        finally:
            pub.stop.set()
            pub.join(5)
            operator.close()
            viewer_context.close()
    assert errors == []
