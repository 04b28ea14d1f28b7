"""The node agent's configuration file (TOML): who the node is, its radio, its band, where to send.

Example (every key, with its default where it has one)::

    node_id = "su01"
    position_m = [6.5, 29.5, 1.5]          # surveyed antenna position, hall coordinates
    interval_s = 0.1                        # one reading every 100 ms (a sweeping node: one sweep,
                                            # a reading per step, every interval when the radio keeps up)
    state_dir = "/var/lib/rftwin-node"      # spool.db, status.json, sigmf/ (relative: to this file)

    [radio]
    backend = "pluto"                       # pluto | soapy | simulated
    center_hz = 3.7e9
    sample_rate_hz = 30.72e6
    gain_db = 40.0
    samples_per_reading = 65536
    discard_buffers_after_retune = 2        # buffers dropped after every retune (LO settling), any
                                            # backend (default 2; 0 for the simulated radios)
    [radio.args]                            # passed to the backend (pluto: uri; soapy: device, ...)
    uri = "usb:1.2.5"

    [band]                                  # relative to center_hz; or instead of offset_hz,
                                            # bandwidth_hz and subbands, the site's band plan:
                                            # [band.plan] center_hz = 3.7e9, bandwidth_hz = 100e6,
                                            # scs_hz = 30e3, subbands = 16 (GET /api/v1/site band_plan)
                                            # A plan wider than the radio's usable span
                                            # (sample_rate_hz × (1 − 2·edge_crop)) is swept: node.sweep
    offset_hz = 0.0
    bandwidth_hz = 20e6
    nperseg = 1024
    edge_crop = 0.1
    [[band.subbands]]
    offset_hz = -5e6
    bandwidth_hz = 8e6

    [calibration]                           # dBFS → dBm; required for real radios
    file = "calibration.toml"               # or frequencies_hz / gains_db / offsets_db inline

    [central]
    url = "https://central.hall:8443"       # omit to find the central unit by zeroconf
    token_file = "/etc/rftwin-node/token"   # or token = "…"
    ca_file = "/etc/rftwin-node/ca.pem"     # pin the site CA for https
    batch_max_records = 500
    timeout_s = 5.0
    backoff_initial_s = 0.5
    backoff_max_s = 30.0
    discovery_timeout_s = 5.0

    [spool]
    max_records = 1000000
    policy = "drop_oldest"                  # or "refuse"
    reserve_bytes = 67108864                # free space the spool leaves on its filesystem, for the
                                            # status file and its own WAL (default: 1/16 of the
                                            # filesystem, at most 64 MiB; node/spool.py says why)

    [sigmf]
    on_saturation = true                    # capture the IQ of saturated readings
    max_captures = 20                       # oldest deleted beyond this
    min_interval_s = 60.0

Relative paths are relative to the config file's directory. Unknown keys are errors.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from contracts.band_plan import BandPlan, BandPlanError
from contracts.toml_fields import ConfigError, Fields, read_toml
from node.calibration_table import CalibrationTable
from node.dsp import Band, BandPowerConfig
from node.protocol import MAX_BATCH_RECORDS, NODE_ID_RE
from node.sweep import SweepError, SweepPlan, plan_sweep

BACKENDS = ("pluto", "soapy", "simulated")
__all__ = ["ConfigError", "NodeConfig", "load_config", "parse_config"]


@dataclass(frozen=True)
class RadioConfig:
    backend: str
    center_hz: float
    sample_rate_hz: float
    gain_db: float
    samples_per_reading: int
    args: dict = field(default_factory=dict)  # backend-specific, validated by the backend
    # buffers discarded after every retune, any backend; None: the backend's default (2; simulated: 0)
    discard_buffers_after_retune: int | None = None


@dataclass(frozen=True)
class CentralConfig:
    url: str | None  # None: discover by zeroconf
    token: str
    ca_file: Path | None
    batch_max_records: int
    timeout_s: float
    backoff_initial_s: float
    backoff_max_s: float
    discovery_timeout_s: float


@dataclass(frozen=True)
class SpoolConfig:
    path: Path
    max_records: int
    policy: str
    reserve_bytes: int | None = None  # None: scaled to the filesystem (node.spool.Spool)


@dataclass(frozen=True)
class SigmfConfig:
    directory: Path
    on_saturation: bool
    max_captures: int
    min_interval_s: float


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    position_m: tuple[float, float, float]
    interval_s: float
    state_dir: Path
    radio: RadioConfig
    band: BandPowerConfig
    calibration: CalibrationTable | None  # None only for the simulated backend (its nominal table)
    central: CentralConfig
    spool: SpoolConfig
    sigmf: SigmfConfig
    source: str = ""  # the file it came from, for error messages
    base_dir: Path | None = None  # relative paths in backend args resolve against this
    band_plan: BandPlan | None = None  # [band.plan]: the site's band plan this node measures
    # the steps a plan wider than the radio is swept in (node.sweep); None: one tuning measures it all.
    # ``band`` is then the first step's.
    sweep: SweepPlan | None = None

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"


def load_config(path: str | Path) -> NodeConfig:
    return parse_config(*read_toml(path))


def parse_config(data: dict, source: str = "<config>", base_dir: Path | None = None) -> NodeConfig:
    top = Fields(data, "", source, base_dir)
    node_id = top.string("node_id")
    if not NODE_ID_RE.match(node_id):
        raise top.error("node_id", f"must be 1-64 of letters, digits, '-', '_', '.', got {node_id!r}")
    position = top.vector("position_m", 3)
    interval = top.real("interval_s", 0.01, 3600.0, default=0.1)
    state_dir = top.path("state_dir", default="state")

    radio = _radio(top.sub("radio", required=True))
    band, band_plan, sweep = _band(top.sub("band", required=True), radio)
    if radio.samples_per_reading < band.nperseg:
        raise top.error("radio.samples_per_reading", f"shorter than one Welch segment (band.nperseg = {band.nperseg})")
    calibration = _calibration(top.sub("calibration"), radio, sweep)
    central = _central(top.sub("central", required=True))
    spool_f = top.sub("spool")
    spool = SpoolConfig(
        path=state_dir / "spool.db",
        max_records=spool_f.integer("max_records", 1, 100_000_000, default=1_000_000),
        policy=spool_f.string("policy", "drop_oldest", choices=("drop_oldest", "refuse")),
        reserve_bytes=spool_f.integer("reserve_bytes", 0, 2**62) if spool_f.has("reserve_bytes") else None,
    )
    spool_f.reject_unknown()
    sig_f = top.sub("sigmf")
    sigmf = SigmfConfig(
        directory=state_dir / "sigmf",
        on_saturation=sig_f.boolean("on_saturation", True),
        max_captures=sig_f.integer("max_captures", 0, 100_000, default=20),
        min_interval_s=sig_f.real("min_interval_s", 0.0, 86_400.0, default=60.0),
    )
    sig_f.reject_unknown()
    top.reject_unknown()
    return NodeConfig(node_id, position, interval, state_dir, radio, band, calibration, central, spool, sigmf, source, base_dir,  # type: ignore[arg-type]
                      band_plan, sweep)


def _radio(f: Fields) -> RadioConfig:
    r = RadioConfig(
        backend=f.string("backend", choices=BACKENDS),
        center_hz=f.real("center_hz", 1e6, 1e11),
        sample_rate_hz=f.real("sample_rate_hz", 1e3, 1e9),
        gain_db=f.real("gain_db", -50.0, 120.0),
        samples_per_reading=f.integer("samples_per_reading", 16, 1 << 26, default=65536),
        args=f.sub("args").table,
        discard_buffers_after_retune=f.integer("discard_buffers_after_retune", 0, 100)
        if f.has("discard_buffers_after_retune") else None,
    )
    f.reject_unknown()
    return r


def _band(f: Fields, radio: RadioConfig) -> tuple[BandPowerConfig, BandPlan | None, SweepPlan | None]:
    """``[band]``: explicit bands relative to the radio's centre, or ``[band.plan]``, the site's band plan
    (GET /api/v1/site band_plan: centre, channel bandwidth, subcarrier spacing, PRBs, sub-bands), from
    which the band (the PRB grid) and its sub-bands follow, and which every reading then names. A plan
    that does not fit the radio's usable span around ``radio.center_hz`` is swept (:mod:`node.sweep`):
    the returned band is then the first step's."""
    def band(g: Fields) -> Band:
        b = Band(g.real("offset_hz", -1e9, 1e9, default=0.0), g.real("bandwidth_hz", 1.0, 1e9))
        g.reject_unknown()
        return b

    plan, fingerprint = None, ""
    if f.has("plan"):
        if f.has("offset_hz") or f.has("bandwidth_hz") or f.has("subbands"):
            raise f.error("plan", "give either [band.plan] or offset_hz / bandwidth_hz / [[band.subbands]], not both")
        try:
            plan = BandPlan.from_dict(f.sub("plan").table)
        except BandPlanError as e:
            raise f.error("plan", str(e)) from None
        main = Band(plan.center_hz - radio.center_hz, plan.occupied_hz)
        subs = tuple(Band(b.center_hz - radio.center_hz, b.width_hz) for b in plan.grid)
        fingerprint = plan.fingerprint
    else:
        main = Band(f.real("offset_hz", -1e9, 1e9, default=0.0), f.real("bandwidth_hz", 1.0, 1e9))
        subs = tuple(band(g) for g in f.subs("subbands"))
    nperseg = f.integer("nperseg", 16, 1 << 20, default=1024)
    edge_crop = f.real("edge_crop", 0.0, 0.49, default=0.1)
    f.reject_unknown()
    try:
        return BandPowerConfig(radio.sample_rate_hz, main, subs, nperseg=nperseg, edge_crop=edge_crop, band_plan=fingerprint), plan, None
    except ValueError as e:
        if plan is None:
            raise f.error("bandwidth_hz", str(e)) from None
        why = e
    try:  # the plan does not fit this tuning: sweep it
        sweep = plan_sweep(plan, radio.sample_rate_hz, edge_crop=edge_crop, nperseg=nperseg)
    except SweepError as e:
        raise f.error("plan", f"the band plan's {plan.occupied_hz / 1e6:g} MHz at {plan.center_hz / 1e6:g} MHz cannot be "
                      f"swept: {e} (at radio.center_hz: {why})") from None  # fmt: skip
    return sweep.steps[0].band, plan, sweep


def _calibration(f: Fields, radio: RadioConfig, sweep: SweepPlan | None = None) -> CalibrationTable | None:
    if f.has("file"):
        path = f.path("file")
        f.reject_unknown()
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise f.error("file", f"cannot read calibration table {path}: {e}") from None
        f = Fields(data, "", str(path))
    if not f.table:
        if radio.backend != "simulated":
            raise ConfigError(
                f"{f.source}: calibration: required for the {radio.backend} backend: without a measured "
                "dBFS→dBm table, readings would be wrong by tens of dB"
            )
        return None
    try:
        table = CalibrationTable(
            tuple(f.raw("frequencies_hz", ())), tuple(f.raw("gains_db", ())), tuple(map(tuple, f.raw("offsets_db", ())))
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{f.source}: calibration: {e}") from None
    f.reject_unknown()
    try:
        table.offset_db(radio.center_hz, radio.gain_db)
    except ValueError as e:
        raise ConfigError(f"{f.source}: calibration: does not cover radio.center_hz and radio.gain_db: {e}") from None
    for step in sweep.steps if sweep is not None else ():
        try:
            table.offset_db(step.center_hz, radio.gain_db)
        except ValueError as e:
            raise ConfigError(f"{f.source}: calibration: does not cover sweep step {step.index} at "
                              f"{step.center_hz / 1e6:g} MHz: {e}") from None  # fmt: skip
    return table


def _central(f: Fields) -> CentralConfig:
    url = f.optional_string("url")
    if url is not None and not url.startswith(("http://", "https://")):
        raise f.error("url", f"must start with http:// or https://, got {url!r}")
    if f.has("token") == f.has("token_file"):
        raise f.error("token", "give exactly one of token or token_file")
    if f.has("token"):
        token = f.string("token")
    else:
        token_path = f.path("token_file")
        try:
            token = token_path.read_text().strip()
        except OSError as e:
            raise f.error("token_file", f"cannot read {token_path}: {e.strerror or e}") from None
        if not token:
            raise f.error("token_file", f"{token_path} is empty")
    ca = f.path("ca_file")
    if ca is not None and not ca.is_file():
        raise f.error("ca_file", f"{ca} does not exist")
    c = CentralConfig(
        url=url.rstrip("/") if url else None,
        token=token,
        ca_file=ca,
        batch_max_records=f.integer("batch_max_records", 1, MAX_BATCH_RECORDS, default=500),
        timeout_s=f.real("timeout_s", 0.1, 300.0, default=5.0),
        backoff_initial_s=f.real("backoff_initial_s", 0.01, 600.0, default=0.5),
        backoff_max_s=f.real("backoff_max_s", 0.01, 3600.0, default=30.0),
        discovery_timeout_s=f.real("discovery_timeout_s", 0.1, 600.0, default=5.0),
    )
    if c.backoff_max_s < c.backoff_initial_s:
        raise f.error("backoff_max_s", "must be >= backoff_initial_s")
    f.reject_unknown()
    return c
