"""mDNS discovery of the central unit: real zeroconf traffic, confined to a private network namespace.

Each scenario runs in its own ``unshare -n`` namespace with only ``lo`` (up, with a multicast
route), so nothing leaves the sandbox and scenarios cannot hear each other. Inside, the central
unit's :class:`Advertisement` runs in child processes and :func:`discover_central` in the parent,
which prints what it found as JSON. The scenarios start together (module fixture) so the module
takes about as long as the slowest one (~4 s), not their sum.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from zeroconf import ServiceInfo

from contracts.discovery import SERVICE_TYPE, Advertisement, CentralService
from node.discovery import DiscoveryError, discover_central

ROOT = Path(__file__).resolve().parents[1]
NETNS_SETUP = "ip link set lo up && ip route add 224.0.0.0/4 dev lo"

# Runs inside the namespace. argv[1]: JSON scenario
#   {"adverts": [Advertisement kwargs + optional "async": bool], "timeout": s,
#    "discover_first": bool (start browsing before the central units come up),
#    "quiet_s": s to wait after all adverts are up (RFC 6762 stops a responder from multicasting a
#               record again within 1 s of its announcement, so a query right after registration
#               is answered only on the browser's second query, ~1 s later)}
# Prints one JSON line: {"url", "name", "properties"} or {"error"}, plus "adverts".
SCENARIO = r"""
import asyncio, json, subprocess, sys, threading, time
from contracts.discovery import Advertisement
from node.discovery import DiscoveryError, discover_central

ADVERTISER = '''
import asyncio, json, sys
from contracts.discovery import Advertisement
kw = json.loads(sys.argv[1]); use_async = kw.pop("async", False)
def ready(ad):
    print(json.dumps({"url": ad.url, "name": ad.name}), flush=True)
if use_async:
    async def main():
        async with Advertisement(**kw) as ad:
            ready(ad)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    asyncio.run(main())
else:
    with Advertisement(**kw) as ad:
        ready(ad)
        sys.stdin.read()
'''

sc = json.loads(sys.argv[1])
out = {}

def start_adverts():
    procs = [subprocess.Popen([sys.executable, "-c", ADVERTISER, json.dumps(kw)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for kw in sc["adverts"]]
    out["adverts"] = [json.loads(p.stdout.readline() or "null") for p in procs]
    return procs

def discover():
    try:
        svc = discover_central(sc["timeout"])
        out.update(url=svc.url, name=svc.name, properties=svc.properties)
    except DiscoveryError as exc:
        out["error"] = str(exc)

if sc.get("discover_first"):
    th = threading.Thread(target=discover); th.start()
    procs = start_adverts(); th.join()
else:
    procs = start_adverts()
    time.sleep(sc.get("quiet_s", 0.0))
    discover()
for p in procs:
    p.stdin.close()
for p in procs:
    p.wait(timeout=10)
out["advert_rcs"] = [p.returncode for p in procs]
print(json.dumps(out), flush=True)
"""

SCENARIOS = {
    # default addresses: a fresh namespace has only lo, so the fallback 127.0.0.1 is advertised
    "single": {
        "adverts": [{"port": 8443, "scheme": "https", "path": "/rftwin/", "name": "central-x"}],
        "timeout": 3.0,
        "quiet_s": 1.1,
    },
    # node boots before the central unit: it must catch the announcement; asyncio advertiser
    "discover_first": {
        "adverts": [{"port": 8081, "addresses": ["127.0.0.1"], "async": True}],
        "timeout": 5.0,
        "discover_first": True,
    },
    # two central units: the lexically lowest name wins whichever answers first ("b" comes up first)
    "two": {
        "adverts": [
            {"port": 9002, "name": "rftwin-central-b", "properties": {"site": "hall-b"}},
            {"port": 9001, "name": "rftwin-central-a", "properties": {"site": "hall-a"}},
        ],
        "timeout": 3.0,
        "quiet_s": 1.1,
    },
    "none": {"adverts": [], "timeout": 1.5},
}


def _netns_cmd(*argv: str) -> list[str]:
    # exec keeps the python process the namespace's main process; argv passed as "$@" (no quoting issues)
    return ["unshare", "-n", "--", "sh", "-c", f'{NETNS_SETUP} && exec "$@"', "sh", *argv]


def _netns_or_skip() -> None:
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"network namespace test needs {', '.join(missing)} on PATH")
    probe = _netns_cmd("true")
    res = subprocess.run(probe, check=False, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        pytest.skip(
            f"cannot create a private network namespace here: `{shlex.join(probe)}` exited "
            f"{res.returncode}: {res.stderr.strip()}"
        )


@pytest.fixture(scope="module")
def netns_results():
    """Start every scenario at once, each in its own namespace; skip only if namespaces are refused."""
    _netns_or_skip()
    procs = {
        key: subprocess.Popen(
            _netns_cmd(sys.executable, "-c", SCENARIO, json.dumps(sc)),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for key, sc in SCENARIOS.items()
    }
    results: dict[str, dict] = {}

    def get(key: str) -> dict:
        if key not in results:
            try:
                stdout, stderr = procs[key].communicate(timeout=30)
            except subprocess.TimeoutExpired:
                procs[key].kill()
                stdout, stderr = procs[key].communicate()
                pytest.fail(f"scenario {key} hung; stderr:\n{stderr}")
            assert procs[key].returncode == 0, f"scenario {key} failed:\n{stderr}"
            lines = stdout.strip().splitlines()
            assert lines, f"scenario {key} printed nothing; stderr:\n{stderr}"
            results[key] = json.loads(lines[-1])
            results[key]["stderr"] = stderr
        return results[key]

    yield get
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.communicate()


def test_discovers_the_advertised_central_unit(netns_results):
    r = netns_results("single")
    assert "error" not in r, r
    assert r["url"] == "https://127.0.0.1:8443/rftwin"
    assert r["adverts"] == [{"url": r["url"], "name": "central-x"}]  # what the central says it publishes
    assert r["name"] == "central-x"
    assert r["properties"] == {"scheme": "https", "path": "/rftwin", "api": "1"}
    svc = CentralService(r["name"], r["url"], r["properties"])
    assert (svc.scheme, svc.host, svc.port, svc.path) == ("https", "127.0.0.1", 8443, "/rftwin")
    assert r["advert_rcs"] == [0]


def test_node_started_before_the_central_unit_catches_its_announcement(netns_results):
    r = netns_results("discover_first")
    assert "error" not in r, r
    assert r["url"] == "http://127.0.0.1:8081"
    assert r["name"].startswith("rftwin-central-")  # default name: rftwin-central-<hostname>
    assert r["properties"] == {"scheme": "http", "path": "/", "api": "1"}
    assert r["advert_rcs"] == [0]


def test_two_central_units_pick_is_deterministic(netns_results):
    r = netns_results("two")
    assert "error" not in r, r
    assert (r["name"], r["url"]) == ("rftwin-central-a", "http://127.0.0.1:9001")
    assert r["properties"]["site"] == "hall-a"
    assert "ignoring rftwin-central-b (http://127.0.0.1:9002)" in r["stderr"]  # the other one is logged
    assert r["advert_rcs"] == [0, 0]


def test_nothing_advertised_raises_an_error_naming_the_timeout(netns_results):
    r = netns_results("none")
    assert "url" not in r, r
    assert SERVICE_TYPE in r["error"] and "1.5 s" in r["error"]


# ----------------------------------------------------------------- URL building, no network needed


def info(addresses: list[str], port: int = 8080, **txt: str) -> ServiceInfo:
    return ServiceInfo(
        SERVICE_TYPE,
        f"c1.{SERVICE_TYPE}",
        port=port,
        properties=txt,
        parsed_addresses=addresses,
        server="c1.local.",
    )


def test_url_prefers_ipv4_and_applies_txt_scheme_and_path():
    svc = CentralService.from_info(info(["2001:db8::7", "192.0.2.7"], 8443, scheme="HTTPS", path="api/v2/"))
    assert svc.url == "https://192.0.2.7:8443/api/v2"
    assert svc.name == "c1"
    assert svc.properties == {"scheme": "HTTPS", "path": "api/v2/"}
    assert svc.api_version == "1"  # absent → the current version


def test_url_defaults_and_ipv6_brackets():
    assert CentralService.from_info(info(["192.0.2.7"])).url == "http://192.0.2.7:8080"
    svc = CentralService.from_info(info(["2001:db8::7"], 9000, path="/"))
    assert svc.url == "http://[2001:db8::7]:9000"
    assert (svc.host, svc.port, svc.path) == ("2001:db8::7", 9000, "/")


@pytest.mark.parametrize(
    "bad, match",
    [(info(["192.0.2.7"], scheme="ftp"), "scheme"), (info([]), "no A/AAAA")],
)
def test_unusable_services_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        CentralService.from_info(bad)


def test_advertisement_validates_and_publishes_the_shared_txt_keys():
    ad = Advertisement(
        8443,
        scheme="https",
        path="rftwin",
        name="c",
        addresses=["192.0.2.9"],
        properties={"scheme": "http", "site": "hall"},
    )
    assert ad.url == "https://192.0.2.9:8443/rftwin"
    assert ad.properties == {"scheme": "https", "path": "/rftwin", "api": "1", "site": "hall"}
    assert ad.info.name == f"c.{SERVICE_TYPE}"
    for kwargs in ({"scheme": "ftp"}, {"name": "x" * 64}, {"addresses": ["not-an-ip"]}):
        with pytest.raises(ValueError):
            Advertisement(8080, **kwargs)
    with pytest.raises(ValueError):
        Advertisement(0)


def test_discover_rejects_a_non_positive_timeout():
    with pytest.raises(ValueError):
        discover_central(0)
    assert issubclass(DiscoveryError, RuntimeError)


# Runs inside a namespace: an ingest endpoint advertised by zeroconf, and a node agent with no URL.
AGENT_WITHOUT_URL = r"""
import json, sys
from pathlib import Path
from node.agent import Agent
from node.config import load_config
from contracts.discovery import Advertisement
from tests.ingest_server import IngestServer
from tests.node_configs import simulated_node_toml, write_config
d = Path(sys.argv[1])
srv = IngestServer(d / "central.db", {"su01": "secret-su01"}).start()
with Advertisement(srv.port, addresses=["127.0.0.1"], name="rftwin-central-test"):
    agent = Agent(load_config(write_config(d, simulated_node_toml(url=None))))
    agent.run(duration_s=3.0)
st = agent.status
print(json.dumps({"port": srv.port, "readings": st.readings, "uploaded": st.uploaded,
                  "central_url": st.central_url, "seqs": srv.store.seqs("su01")}))
"""


def test_a_node_without_a_url_finds_the_central_unit_and_delivers(tmp_path):
    _netns_or_skip()
    res = subprocess.run(_netns_cmd(sys.executable, "-c", AGENT_WITHOUT_URL, str(tmp_path)), cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["central_url"] == f"http://127.0.0.1:{r['port']}"
    assert r["readings"] >= 20 and r["uploaded"] == r["readings"]
    assert r["seqs"] == list(range(r["readings"]))
