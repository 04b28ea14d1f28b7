"""The central unit's configuration file (TOML): ``rftwin-central run --config FILE``.

Example (every key, with its default where it has one)::

    site = "factory-hall-a"                 # built-in site name, or a site file (relative: to this file)
    data_dir = "/var/lib/rftwin/central"    # central.db and models/ live here (relative: to this file)
    advertise = true                        # announce _rftwin._tcp.local. by zeroconf

    [listen]
    host = "127.0.0.1"                      # loopback only; "0.0.0.0" serves the plant network
    port = 8080

    [tls]                                   # optional: serve https (both or neither); `rftwin-central tls init`
    cert = "/var/lib/rftwin/central/tls/server.pem"
    key = "/var/lib/rftwin/central/tls/server.key"

    [detection]
    window_s = 0.1                          # one snapshot per window
    stale_s = 1.0                           # an SU with no reading for this long is stale
    raise_after = 2                         # raise an alarm after k anomalous windows ...
    of_last = 3                             # ... among the last n
    clear_after = 5                         # clear it after m normal windows in a row
    detector = "fusion"                     # detector kind the live engine runs (models.detectors: ed, lof, gls, glrt, bayes, …);
                                            # fusion (ED + bayes): chosen on validation worlds (docs/results/realism.md)
    integration = "cusum"                   # "cusum": alarms from a CUSUM of the scores; "none": per snapshot
    cusum_drift = 1.5                       # CUSUM drift and threshold, in standard deviations of a normal
    cusum_threshold = 57.3                  # snapshot's score (docs/results/operating_point.md)

    [twin]
    predictor = "maps"                      # "maps": the ray-traced gain maps; "surrogate": an ONNX path-loss model
    surrogate_dir = "models/surrogate-rf"   # used by predictor = "surrogate" (relative: to this file); from
                                            # `rftwin-surrogate train`, and for this site (content hash checked)
    max_depth = 5                           # ray-tracing fidelity of the maps ("maps"): reflections per path ...
    diffraction = false                     # ... and edge diffraction; both are part of the map cache key
                                            # (a change traces new maps at the next start: minutes)

    [retention]
    measurements_days = 7.0                 # measurements and context older than this are purged
    snapshots_days = 30.0                   # snapshots older than this are purged (alarms are kept)

    [store]
    integrity_check_startup_s = 5.0         # PRAGMA quick_check at start-up for at most this long; if
                                            # not finished, it runs to the end in the background
    integrity_check_period_s = 3600.0       # then again this often while running; 0: only at start-up.
                                            # A failed check makes every write (ingest too) answer 503
                                            # database_corrupt and /health "failing" (docs/operations.md)

    [limits]
    max_batch_records = 1000                # node.protocol.MAX_BATCH_RECORDS at most
    max_body_bytes = 4194304                # request bodies above this get 413
    max_future_skew_s = 60.0                # t_ns further than this in the future gets 422
    requests_per_s = 50.0                   # per credential (node, integration, operator, …); 0: no limit
    request_burst = 500                     # requests a credential may make at once before 429
    header_timeout_s = 10.0                 # a request head not complete this long after the connection
                                            # opened (or its first byte, between requests) closes it
    body_timeout_s = 30.0                   # a request body not complete this long after its head: 408
    max_connections = 500                   # open connections at most; beyond: 503 and closed at once
    failed_auth_per_s = 1.0                 # failed authentications per client address; 0: no limit
    failed_auth_burst = 20                  # ... at once, before every request from there gets 429

    [webhooks]                              # alarm transitions POSTed to the scheduler (central/webhooks.py)
    urls = ["https://scheduler.hall:9443/rftwin"]   # none: no webhooks
    secret_file = "/etc/rftwin/webhook.key" # or secret = "…": the HMAC-SHA256 key receivers check
    timeout_s = 5.0                         # per POST
    backoff_initial_s = 1.0                 # a failed POST is retried after this, doubling ...
    backoff_max_s = 300.0                   # ... up to this; undelivered events survive restarts

    [[integrations]]                        # context feeds (POST /api/v1/context); also `integration add`
    name = "ran-scheduler"
    token_sha256 = "<64 hex digits>"        # sha256 of the token, never the token itself

    [[operators]]                           # who may acknowledge alarms; also `operator add`
    name = "shift-lead"
    token_sha256 = "<64 hex digits>"

    [[viewers]]                             # who may read (API, event stream, dashboard); also `viewer add`
    name = "control-room"
    token_sha256 = "<64 hex digits>"

    [[scrapers]]                            # Prometheus: GET /api/v1/metrics only; also `scraper add`
    name = "prometheus"
    token_sha256 = "<64 hex digits>"

Every read but ``/api/v1/health`` needs a credential: a viewer or operator token (or the dashboard's
session cookie, from logging in with one), a scraper token for ``/metrics``.
``[operators]`` may also be a single table (``[operators] token_sha256 = "…"``, name "operator").
Unknown keys are errors: a typo must fail at start-up, not be a silently ignored setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from central.twin.site import BUILTIN_SITES, DEFAULT_SITE, Site, resolve_site
from central.twin.solvers import TWIN_FIDELITY, SolverSettings, fidelity_settings
from contracts.toml_fields import ConfigError, Fields, read_toml
from node.protocol import MAX_BATCH_RECORDS

# The live engine's detector: the one bench/realism.py --select chose on validation worlds (the largest
# worst-case AUC margin over ED across SU heights, model errors and robustness stresses).
DEFAULT_DETECTOR = "fusion"
INTEGRATIONS = ("none", "cusum")  # central.detection.sequential
# The product's CUSUM operating point (z units), chosen on a replayed validation day by
# bench/operating_point.py (docs/results/operating_point.md).
DEFAULT_CUSUM_DRIFT = 1.5
DEFAULT_CUSUM_THRESHOLD = 57.3

__all__ = ["CentralConfig", "ConfigError", "load_config", "parse_config", "TokenEntry"]

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass(frozen=True)
class ListenConfig:
    """Loopback by default: serving the plant network is a decision the config file states
    (``host = "0.0.0.0"``, as ``systemd/install.sh central`` writes it)."""

    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path


@dataclass(frozen=True)
class DetectionConfig:
    window_s: float = 0.1
    stale_s: float = 1.0
    raise_after: int = 2  # k
    of_last: int = 3  # n
    clear_after: int = 5  # m
    detector: str = DEFAULT_DETECTOR
    # Temporal integration of the scores (central.detection.sequential): a CUSUM in z units, its values
    # chosen on a replayed validation day (bench/operating_point.py, docs/results/operating_point.md).
    integration: str = "cusum"
    cusum_drift: float = DEFAULT_CUSUM_DRIFT
    cusum_threshold: float = DEFAULT_CUSUM_THRESHOLD


PREDICTORS = ("maps", "surrogate")
MAX_TRACE_DEPTH = 8  # a bound against typos: trace time grows with every further reflection


@dataclass(frozen=True)
class TwinConfig:
    """Which predictor the live engine uses: the gain maps, or a path-loss surrogate (models.surrogate);
    and how faithfully the maps are traced (a deeper trace or diffraction costs build time, once)."""

    predictor: str = "maps"  # one of PREDICTORS
    surrogate_dir: Path | None = None
    max_depth: int = TWIN_FIDELITY.max_depth
    diffraction: bool = TWIN_FIDELITY.diffraction

    def solver_settings(self) -> SolverSettings:
        return fidelity_settings(self.max_depth, self.diffraction)


@dataclass(frozen=True)
class RetentionConfig:
    measurements_days: float = 7.0
    snapshots_days: float = 30.0


@dataclass(frozen=True)
class StoreConfig:
    """``[store]``: the database's integrity checks (:meth:`central.store.Store.check_integrity`)."""

    integrity_check_startup_s: float = 5.0
    integrity_check_period_s: float = 3600.0  # 0: no periodic check


@dataclass(frozen=True)
class LimitsConfig:
    max_batch_records: int = MAX_BATCH_RECORDS
    max_body_bytes: int = 4 << 20
    max_future_skew_s: float = 60.0
    requests_per_s: float = 50.0  # token bucket per credential; 0 disables it
    request_burst: int = 500
    header_timeout_s: float = 10.0  # slow clients (slowloris): see central.http_limits
    body_timeout_s: float = 30.0
    max_connections: int = 500
    failed_auth_per_s: float = 1.0  # token bucket per client address, for 401s; 0 disables it
    failed_auth_burst: int = 20

    @property
    def max_future_skew_ns(self) -> int:
        return int(self.max_future_skew_s * 1e9)


@dataclass(frozen=True)
class WebhookConfig:
    """``[webhooks]``: where alarm transitions are POSTed, HMAC-signed with ``secret``."""

    urls: tuple[str, ...] = ()
    secret: str = ""
    timeout_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0


@dataclass(frozen=True)
class TokenEntry:
    """A named credential: only the SHA-256 (hex) of the token is ever stored."""

    name: str
    token_sha256: str


@dataclass(frozen=True)
class CentralConfig:
    site: str  # a built-in site name, or an absolute path to a site file
    data_dir: Path
    listen: ListenConfig = field(default_factory=ListenConfig)
    advertise: bool = True
    tls: TlsConfig | None = None
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    integrations: tuple[TokenEntry, ...] = ()
    operators: tuple[TokenEntry, ...] = ()
    source: str = "<config>"
    viewers: tuple[TokenEntry, ...] = ()
    scrapers: tuple[TokenEntry, ...] = ()
    twin: TwinConfig = field(default_factory=TwinConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)

    def configured(self, kind: str) -> tuple[TokenEntry, ...]:
        """The credentials of ``kind`` (integration, operator, viewer, scraper) given in the file."""
        return {"integration": self.integrations, "operator": self.operators, "viewer": self.viewers,
                "scraper": self.scrapers}[kind]  # fmt: skip

    @property
    def db_path(self) -> Path:
        return self.data_dir / "central.db"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def load_site(self) -> Site:
        return resolve_site(self.site)


def _webhooks(f: Fields) -> WebhookConfig:
    urls = f.raw("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) and re.match(r"^https?://[^/\s]+", u) for u in urls):
        raise f.error("urls", f"expected a list of http:// or https:// URLs, got {urls!r}")
    if len(set(urls)) < len(urls):
        raise f.error("urls", "a URL appears twice")
    if f.has("secret") and f.has("secret_file"):
        raise f.error("secret", "give secret or secret_file, not both")
    secret = ""
    if f.has("secret_file"):
        path = f.path("secret_file")
        try:
            secret = path.read_text().strip()  # type: ignore[union-attr]
        except OSError as e:
            raise f.error("secret_file", f"cannot read {path}: {e.strerror or e}") from None
    elif f.has("secret"):
        secret = f.string("secret")
    if urls and len(secret) < 16:
        raise f.error("secret", "webhooks need an HMAC key of at least 16 characters (secret or secret_file): "
                      "receivers check every body against it")  # fmt: skip
    cfg = WebhookConfig(tuple(urls), secret, f.real("timeout_s", 0.1, 300.0, default=5.0),
                        f.real("backoff_initial_s", 0.01, 3600.0, default=1.0), f.real("backoff_max_s", 0.01, 86_400.0, default=300.0))  # fmt: skip
    if cfg.backoff_max_s < cfg.backoff_initial_s:
        raise f.error("backoff_max_s", "must be >= backoff_initial_s")
    f.reject_unknown()
    return cfg


def load_config(path: str | Path) -> CentralConfig:
    return parse_config(*read_toml(path))


def parse_config(data: dict, source: str = "<config>", base_dir: Path | None = None) -> CentralConfig:
    top = Fields(data, "", source, base_dir)
    site = top.string("site", DEFAULT_SITE)
    if site not in BUILTIN_SITES:
        site_path = top.path("site")
        assert site_path is not None
        if not site_path.is_file():
            raise top.error("site", f"neither a built-in site ({', '.join(sorted(BUILTIN_SITES))}) nor a file: {site_path}")
        site = str(site_path)
    data_dir = top.path("data_dir", "data")
    assert data_dir is not None
    advertise = top.boolean("advertise", True)

    lf = top.sub("listen")
    listen = ListenConfig(lf.string("host", ListenConfig.host), lf.integer("port", 0, 65535, default=8080))
    lf.reject_unknown()

    tls = None
    if top.has("tls"):
        tf = top.sub("tls")
        cert, key = tf.path("cert"), tf.path("key")
        if cert is None or key is None:
            raise tf.error("cert" if cert is None else "key", "missing: [tls] needs both cert and key")
        for k, p in (("cert", cert), ("key", key)):
            if not p.is_file():
                raise tf.error(k, f"no such file: {p}")
        tf.reject_unknown()
        tls = TlsConfig(cert, key)

    df = top.sub("detection")
    detection = DetectionConfig(
        window_s=df.real("window_s", 0.001, 3600.0, default=0.1),
        stale_s=df.real("stale_s", 0.001, 86_400.0, default=1.0),
        raise_after=df.integer("raise_after", 1, 1000, default=2),
        of_last=df.integer("of_last", 1, 1000, default=3),
        clear_after=df.integer("clear_after", 1, 100_000, default=5),
        detector=df.string("detector", DEFAULT_DETECTOR),
        integration=df.string("integration", DetectionConfig.integration, choices=INTEGRATIONS),
        cusum_drift=df.real("cusum_drift", 0.01, 100.0, default=DetectionConfig.cusum_drift),
        cusum_threshold=df.real("cusum_threshold", 0.01, 10_000.0, default=DetectionConfig.cusum_threshold),
    )
    try:
        from models.detectors import DetectorError, make_detector
    except ImportError:  # pragma: no cover - models is part of the central install
        pass
    else:
        try:
            make_detector(detection.detector)
        except DetectorError as e:
            raise df.error("detector", str(e)) from None
    if detection.raise_after > detection.of_last:
        raise df.error("raise_after", f"{detection.raise_after} anomalous windows can never occur among the "
                       f"last of_last = {detection.of_last}")  # fmt: skip
    df.reject_unknown()

    twin = _twin_config(top.sub("twin"), site)

    rf = top.sub("retention")
    retention = RetentionConfig(
        measurements_days=rf.real("measurements_days", 0.0, 36_500.0, default=7.0),
        snapshots_days=rf.real("snapshots_days", 0.0, 36_500.0, default=30.0),
    )
    rf.reject_unknown()

    sf = top.sub("store")
    store = StoreConfig(
        integrity_check_startup_s=sf.real("integrity_check_startup_s", 0.0, 3600.0, default=5.0),
        integrity_check_period_s=sf.real("integrity_check_period_s", 0.0, 30 * 86_400.0, default=3600.0),
    )
    if 0.0 < store.integrity_check_period_s < 1.0:
        raise sf.error("integrity_check_period_s", "at least 1 s (or 0: no periodic check)")
    sf.reject_unknown()

    mf = top.sub("limits")
    limits = LimitsConfig(
        max_batch_records=mf.integer("max_batch_records", 1, MAX_BATCH_RECORDS, default=MAX_BATCH_RECORDS),
        max_body_bytes=mf.integer("max_body_bytes", 1024, 1 << 30, default=4 << 20),
        max_future_skew_s=mf.real("max_future_skew_s", 0.0, 86_400.0, default=60.0),
        requests_per_s=mf.real("requests_per_s", 0.0, 1e6, default=50.0),
        request_burst=mf.integer("request_burst", 1, 1_000_000, default=500),
        header_timeout_s=mf.real("header_timeout_s", 0.01, 3600.0, default=10.0),
        body_timeout_s=mf.real("body_timeout_s", 0.01, 3600.0, default=30.0),
        max_connections=mf.integer("max_connections", 1, 1_000_000, default=500),
        failed_auth_per_s=mf.real("failed_auth_per_s", 0.0, 1e6, default=1.0),
        failed_auth_burst=mf.integer("failed_auth_burst", 1, 1_000_000, default=20),
    )
    mf.reject_unknown()

    webhooks = _webhooks(top.sub("webhooks"))

    integrations = tuple(_token_entry(f) for f in top.subs("integrations"))
    if isinstance(top.table.get("operators"), dict):  # the single-table form
        of = top.sub("operators")
        operators: tuple[TokenEntry, ...] = (TokenEntry(of.string("name", "operator"), _sha(of)),)
        of.reject_unknown()
    else:
        operators = tuple(_token_entry(f) for f in top.subs("operators"))
    viewers = tuple(_token_entry(f) for f in top.subs("viewers"))
    scrapers = tuple(_token_entry(f) for f in top.subs("scrapers"))
    for kind, entries in (("integrations", integrations), ("operators", operators), ("viewers", viewers),
                          ("scrapers", scrapers)):  # fmt: skip
        names = [e.name for e in entries]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise top.error(kind, f"duplicate name {dup!r}")
    top.reject_unknown()
    return CentralConfig(site, data_dir, listen, advertise, tls, detection, retention, limits,
                         integrations, operators, source, twin=twin, viewers=viewers, scrapers=scrapers,
                         store=store, webhooks=webhooks)  # fmt: skip


def _twin_config(f: Fields, site: str) -> TwinConfig:
    """``[twin]``; a surrogate directory is checked now (present, readable, this site's): a wrong
    model must stop the start-up, not make every prediction wrong."""
    predictor = f.string("predictor", "maps", choices=PREDICTORS)
    surrogate_dir = f.path("surrogate_dir")
    fidelity = {"max_depth": f.integer("max_depth", 1, MAX_TRACE_DEPTH, TWIN_FIDELITY.max_depth),
                "diffraction": f.boolean("diffraction", TWIN_FIDELITY.diffraction)}  # fmt: skip
    f.reject_unknown()
    if predictor != "surrogate":
        return TwinConfig(predictor, surrogate_dir, **fidelity)
    if surrogate_dir is None:
        raise f.error("surrogate_dir", 'missing: predictor = "surrogate" needs the model directory')
    from models.surrogate import SurrogateError, check_site, read_manifest

    try:
        check_site(read_manifest(surrogate_dir), resolve_site(site).content_hash(), str(surrogate_dir))
    except SurrogateError as e:
        raise f.error("surrogate_dir", str(e)) from None
    return TwinConfig(predictor, surrogate_dir, **fidelity)


def _sha(f: Fields) -> str:
    v = f.string("token_sha256").lower()
    if not SHA256_RE.match(v):
        raise f.error("token_sha256", "expected 64 hex digits (the SHA-256 of the token, not the token)")
    return v


def _token_entry(f: Fields) -> TokenEntry:
    name = f.string("name")
    if not NAME_RE.match(name):
        raise f.error("name", f"must be 1-64 of letters, digits, '-', '_', '.', '@', got {name!r}")
    entry = TokenEntry(name, _sha(f))
    f.reject_unknown()
    return entry
