"""The dashboard in a real browser: headless Debian chromium (driven by Playwright, no browser download)
against a real uvicorn server fed by a thread publishing synthetic live records. The page must show
the floor plan, go live, raise the jammer alarm banner when the alarm arrives, and clear it again."""

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
from tests.central_helpers import VIEWER_TOKEN
from tests.dashboard_server import JAMMER_XY, DashboardServer, alarm, nodes, snapshot

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

    def __init__(self, bus: EventBus, site, period_s: float = 0.25):
        super().__init__(name="dashboard-publisher", daemon=True)
        self.bus, self.site, self.period_s = bus, site, period_s
        self.rng = np.random.default_rng(4)
        self.jammer = threading.Event()
        self.stop = threading.Event()
        self.last = None
        self.count = 0

    def publish_once(self) -> None:
        now = time.time_ns()
        jam = self.jammer.is_set()
        sat = SATURATED if jam else frozenset()
        self.last = snapshot(self.site, now, self.rng, jammer=jam, stale=STALE, saturated=sat)
        self.bus.publish("snapshot", self.last.to_dict())
        if self.count % 4 == 0:
            self.bus.publish(
                "nodes", nodes(self.site, now, stale=STALE, saturated=sat, records=self.count + 500,
                               spool_full=SPOOL_FULL)  # fmt: skip
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
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
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
            assert cookie["name"] == "rftwin_session" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
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
            page.wait_for_selector("#alarm-banner[data-state='none']", state="hidden", timeout=10_000)
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
