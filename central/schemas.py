"""Pydantic models of the HTTP API: what OpenAPI (``/docs``) shows, and the validation of small bodies.

The ingest body is *documented* by :class:`IngestBatchModel` but validated by
:meth:`node.protocol.IngestBatch.from_dict`, the one validator the node itself runs before spooling
(same rules on both sides, and ~5 µs per record instead of pydantic's object construction on the
hot path). The context body is validated here. Every request model is strict (a number is a JSON
number, not ``"2"`` or ``true``; an integer is a number without a fractional part, as in JSON
Schema: ``2`` or ``2.0``, not ``2.5``) and forbids unknown fields, NaN and
infinity. Rules JSON Schema can say are in the models (``oneOf`` for "exactly one of"); rules it
cannot (a record's node id equal to its batch's, timestamps against the server's clock, positions
inside the hall) are in the field descriptions, and answered 422 with the reason.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

from node.protocol import (
    FREQUENCY_HZ_RANGE,
    GAIN_DB_RANGE,
    MAX_BATCH_RECORDS,
    MIN_T_NS,
    NODE_ID_RE,
    POWER_DBM_RANGE,
    PROTOCOL_VERSION,
)

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def _integral(v: object) -> object:
    """A JSON number with no fractional part is an integer (JSON Schema's ``integer``): 2.0 as 2.
    Anything else is left to the strict check (which refuses "2", true and 2.5)."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


# An integer of a request body as JSON Schema has it (strict otherwise): Annotated[int, Field(bounds),
# INTEGRAL], the bounds before the validator so that they show in the JSON Schema.
INTEGRAL = BeforeValidator(_integral)
I63 = Annotated[int, Field(ge=0, lt=2**63), INTEGRAL]
T_NS = Annotated[int, Field(ge=MIN_T_NS, lt=2**63), INTEGRAL]  # from 2020: 1970 is a node with no clock
Count = Annotated[int, Field(ge=0, lt=2**31), INTEGRAL]
Power = Annotated[float, Field(ge=POWER_DBM_RANGE[0], le=POWER_DBM_RANGE[1])]
EXAMPLE_T_NS = 1_764_000_000_000_000_000  # examples in the document (schemathesis builds its cases on them)
EXAMPLE_POSITION = [1.0, 1.0, 1.5]  # near a corner of the hall, at the transmitter plane's height
Vec3 = Annotated[list[float], Field(min_length=3, max_length=3, examples=[EXAMPLE_POSITION])]
Vec2 = Annotated[list[float], Field(min_length=2, max_length=2)]
ID_PATTERN = NODE_ID_RE.pattern
MAX_CONTEXT_TXS = 1000


class Problem(BaseModel):
    """Every 4xx/5xx answer, as ``application/problem+json`` (RFC 9457 problem details)."""

    type: str = Field("about:blank", description="about:blank: the status code says what kind of problem")
    title: str = Field(description="the HTTP status phrase, e.g. 'Not Found'")
    status: int = Field(ge=400, le=599, description="the HTTP status code of the answer")
    detail: str = Field(description="what was wrong, in words (names the field, index or limit)")
    reason: str = Field(description="machine-readable reason, also the label of rftwin_rejected_requests_total: "
                        "invalid, future_timestamp, unauthorized, forbidden, not_found, conflict, refused, "
                        "too_large, unsupported_media_type, rate_limited, timeout, unavailable, ...")  # fmt: skip

    model_config = ConfigDict(json_schema_extra={"required": ["type", "title", "status", "detail", "reason"]})


class HealthCheck(BaseModel):
    """One check that is not ok."""

    status: Literal["degraded", "failing"]
    reason: str = Field(description="database_corrupt (failing: writes, ingest included, get 503); disk_full, "
                        "disk_io_error (degraded: the last write failed, the next may succeed); "
                        "integrity_check_error (degraded: the check could not run)", examples=["disk_full"])  # fmt: skip
    detail: str


class Health(BaseModel):
    """``ok``: every check passes (the body is just that). ``degraded`` (still 200): the service serves
    but something needs a look, e.g. the last write failed for a full disk. ``failing`` is a 503
    problem (reason database_corrupt) with the members ``health: "failing"`` and ``checks`` as here:
    the database failed its integrity check and nothing is acknowledged; see docs/operations.md."""

    status: Literal["ok", "degraded"] = "ok"
    checks: dict[str, HealthCheck] | None = Field(None, description="the checks that are not ok, by name "
                                                  "(database, store_write); absent when status is ok")  # fmt: skip


# ------------------------------------------------------------------------------------------ ingest


class MeasurementModel(BaseModel):
    """One band-power reading (node.protocol.Measurement)."""

    model_config = STRICT
    node_id: str = Field(pattern=ID_PATTERN, description="must equal the batch's node_id (422 otherwise)",
                         examples=["su01"])  # fmt: skip
    seq: I63 = Field(description="per node, strictly increasing; (node_id, seq) makes uploads idempotent",
                     examples=[0])  # fmt: skip
    t_ns: T_NS = Field(description="UTC ns since the epoch; at most "
                                                        "limits.max_future_skew_s in the future",
                                                        examples=[EXAMPLE_T_NS])  # fmt: skip
    f_center_hz: float = Field(ge=FREQUENCY_HZ_RANGE[0], le=FREQUENCY_HZ_RANGE[1], examples=[3.7e9])
    bandwidth_hz: float = Field(ge=1.0, description="at most f_center_hz", examples=[20e6])
    power_dbm: Power = Field(description="a lower bound when saturated", examples=[-70.0])
    subband_powers_dbm: list[Power] = Field(default_factory=list, max_length=64)
    saturated: bool = False
    clip_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    gain_db: float = Field(default=0.0, ge=GAIN_DB_RANGE[0], le=GAIN_DB_RANGE[1])
    band_plan: str = Field(default="", pattern=r"^[0-9a-f]{0,32}$",
                           description="fingerprint of the band plan the sub-bands were measured against (GET /site "
                           "band_plan.fingerprint); empty: they follow none, and only power_dbm is used. A reading of "
                           "another plan than the site's is stored but not used, and its node is flagged in GET /nodes")  # fmt: skip
    subband_ids: list[Annotated[int, Field(ge=0, lt=64), INTEGRAL]] = Field(
        default_factory=list, max_length=64,
        description="which of the band plan's sub-bands subband_powers_dbm are, unique and ascending, one per power "
        "(a sweeping node's step reading: power_dbm is then the power in them, f_center_hz and bandwidth_hz the span "
        "they cover); needs band_plan. Empty or absent: all of the plan's sub-bands, in order", examples=[[3, 4, 5]])  # fmt: skip


class SpoolStateModel(BaseModel):
    """A node's spool when it sent the batch (node.protocol.SpoolState): is it losing readings to a
    full disk, and how many so far."""

    model_config = STRICT
    full: bool = Field(description="the spool had no room for the node's latest reading")
    dropped: I63 = Field(description="records the drop_oldest policy deleted unsent, since the spool was created")
    refused: I63 = Field(description="readings not stored because the spool was full, since the agent started")
    free_bytes: I63 = Field(description="free space on the filesystem of the node's spool")


class IngestBatchModel(BaseModel):
    """One upload: 1..max_batch_records records of one node (the token's node), in sequence order.

    Rules JSON Schema cannot express, answered as noted: ``node_id`` is the token's node (403); every
    record's ``node_id`` equals the batch's (422); no record's ``t_ns`` is more than
    ``[limits] max_future_skew_s`` (default 60 s) ahead of the central unit's clock (422,
    reason ``future_timestamp``); more records than ``[limits] max_batch_records`` answer 413.
    ``spool`` is optional (nodes before it do not send it); the latest per node is served by
    ``GET /nodes``."""

    model_config = STRICT
    protocol: Literal[PROTOCOL_VERSION]  # type: ignore[valid-type]
    node_id: str = Field(pattern=ID_PATTERN, description="the token's node (403 otherwise)", examples=["su01"])
    records: list[MeasurementModel] = Field(min_length=1, max_length=MAX_BATCH_RECORDS,
                                            description="each with this node_id; at most [limits] max_batch_records")  # fmt: skip
    spool: SpoolStateModel | None = Field(None, description="the node's spool when it sent the batch")


class IngestAckModel(BaseModel):
    """Durably stored: every seq of the batch (new or already present); ``duplicates`` were present."""

    acked: list[int]
    duplicates: int = Field(ge=0)


# ----------------------------------------------------------------------------------------- context


class SubBandAllocation(BaseModel):
    """One sub-band of the site's band plan that the scheduler gave a transmitter, and its EIRP there."""

    model_config = STRICT
    subband: int = Field(ge=0, lt=64, description="sub-band id of the band plan (GET /band-plan grid)")
    power_dbm: Power = Field(description="EIRP in this sub-band")


class TxContextIn(BaseModel):
    """A legitimate transmitter as the context feed estimates it. Checked against the site and the
    clock (422): ``t_ns`` at most ``[limits] max_future_skew_s`` ahead, ``position_m`` inside the hall,
    ``bandwidth_hz`` at most ``f_center_hz`` (when that is given); an ``allocation`` against the site's
    band plan (ids inside its grid, each once), its powers summing to ``power_dbm`` within 0.5 dB."""

    model_config = STRICT
    tx_id: str = Field(pattern=ID_PATTERN, examples=["ue1"])
    t_ns: T_NS = Field(description="time of the estimate, UTC ns",
                                                        examples=[EXAMPLE_T_NS])  # fmt: skip
    position_m: Vec3 = Field(description="hall coordinates [x, y, z] in m, inside the hall")
    power_dbm: Power
    f_center_hz: float = Field(default=0.0, ge=0.0, le=FREQUENCY_HZ_RANGE[1], description="0: the site's band")
    bandwidth_hz: float = Field(default=0.0, ge=0.0, le=FREQUENCY_HZ_RANGE[1], description="0: unknown")
    allocation: list[SubBandAllocation] | None = Field(
        None, max_length=64, description="the scheduler's allocation over the band plan at t_ns: [] idle (transmits "
        "nothing), null or absent: not reported (power_dbm spread over the band)")
    band_plan: str | None = Field(None, pattern=r"^[0-9a-f]{1,32}$",
                                  description="the plan the allocation refers to (GET /band-plan fingerprint); "
                                  "422 when it is not the site's")  # fmt: skip


class ContextUpdate(BaseModel):
    """A context update (a bare JSON list of transmitters is accepted too)."""

    model_config = STRICT
    transmitters: list[TxContextIn] = Field(min_length=1, max_length=MAX_CONTEXT_TXS)


class ContextStored(BaseModel):
    stored: int


class TxContextOut(BaseModel):
    tx_id: str
    t_ns: int
    position_m: list[float]
    power_dbm: float
    f_center_hz: float
    bandwidth_hz: float
    allocation: list[SubBandAllocation] | None = Field(None, description="as reported; null: not reported")


# --------------------------------------------------------------------------------- what is served


class NodeHealthOut(BaseModel):
    node_id: str
    position_m: list[float]
    last_seen_ns: int | None = Field(description="receive time of its latest batch")
    last_t_ns: int | None = Field(description="measurement time of its newest record")
    last_power_dbm: float | None
    records: int
    saturated: bool
    healthy: bool = Field(description="seen within detection.stale_s and not saturated")
    detail: str = ""
    extra: dict = Field(default_factory=dict, description="su_id, revoked, enrolled_ns, last_seq")
    spool: SpoolStateModel | None = Field(None, description="the node's spool as its latest batch that carried "
                                          "one reported it; null when none did since the central unit started")  # fmt: skip


class SuStateOut(BaseModel):
    su_id: str
    position_m: list[float]
    measured_dbm: float | None
    predicted_dbm: float | None
    residual_db: float | None
    stale: bool
    saturated: bool
    subband_measured_dbm: list[float | None] = Field(default_factory=list, description="per sub-band of the band "
                                                     "plan (GET /band-plan), when the SU's readings follow it")  # fmt: skip
    subband_predicted_dbm: list[float | None] = Field(default_factory=list, description="the twin's per-sub-band "
                                                      "prediction from the scheduler's allocations")  # fmt: skip


class SnapshotOut(BaseModel):
    t_ns: int
    sus: list[SuStateOut]
    txs: list[TxContextOut]
    score: float | None = Field(description="this snapshot's detector score (higher: more anomalous)")
    threshold: float | None = Field(description="the detector's per-snapshot threshold for that score")
    anomalous: bool = Field(description="the verdict that feeds the alarms: with [detection] integration "
                            "\"cusum\" (the default), the CUSUM of the scores is above its threshold, which a "
                            "weak but lasting jammer reaches with every score below `threshold`; with \"none\", "
                            "score > threshold (or a saturated SU)")
    detector: str
    reason: str = ""
    suspected_position_m: list[float] | None = None
    busy_subbands: list[int] = Field(default_factory=list, description="sub-bands allocated to a legitimate transmitter")
    spectral_score: float | None = Field(None, description="the spectral test's score (point source over cells × "
                                         "sub-bands); null without a learned spectral test or sub-band readings")
    spectral_threshold: float | None = None
    affected_subbands: list[int] = Field(default_factory=list, description="sub-bands with the excess power, while "
                                         "the spectral verdict is anomalous")
    wideband_anomalous: bool | None = Field(None, description="the wideband detector's own verdict (on the band "
                                            "totals); null when it could not run")
    spectral_anomalous: bool | None = Field(None, description="the spectral test's own verdict; null without one. "
                                            "`anomalous` is true when either is")


class LikelihoodMapOut(BaseModel):
    origin_m: list[float] = Field(description="lower-left corner (x, y) of cell (0, 0)")
    cell_m: float
    shape: list[int] = Field(description="(rows along y, columns along x)")
    values: list[float] = Field(description="row-major, row 0 at the lowest y; normalised to 1 at the peak")


class InterferenceOut(BaseModel):
    """What a residual alarm's interference is, where it is, and what the network should do about it."""

    interference_class: Literal["narrowband", "partial-band", "wideband", "sweeping", "deceptive"]
    subbands: list[int] = Field(description="affected sub-bands of the band plan (GET /band-plan)")
    subbands_text: str = Field(description='e.g. "sub-bands 5–6 (PRBs 85–118)"')
    avoid_subbands: list[int] = Field(description="sub-bands the scheduler should leave unallocated")
    eirp_dbm: float | None = Field(description="estimated EIRP of the emitter over the affected sub-bands")
    position_m: list[float] | None = Field(description="most likely position (x, y)")
    region_m: list[list[float]] = Field(description="centres (x, y) of the cells of the 90 % likelihood region")
    region_cell_m: float
    time_pattern: Literal["continuous", "duty-cycled"]
    duty: float | None = Field(description="fraction of the alarm's snapshots with the emitter seen on")
    mimics_tx: str | None = Field(description="the legitimate transmitter whose allocation it follows (deceptive)")
    countermeasure: str
    likelihood: LikelihoodMapOut | None = None


class AlarmOut(BaseModel):
    id: int
    kind: str
    state: Literal["active", "cleared"]
    start_ns: int
    end_ns: int | None
    peak_score: float | None
    affected_sus: list[str]
    suspected_position_m: list[float] | None
    acknowledged_by: str | None = None
    acknowledged_ns: int | None = None
    interference: InterferenceOut | None = Field(None, description="residual alarms with spectral evidence: the "
                                                 "interference's class, sub-bands, EIRP, region and countermeasure")
    avoid_subbands: list[int] = Field(default_factory=list, description="while active: sub-bands a scheduler "
                                      "should leave unallocated (machine-readable countermeasure)")


class ObstacleOut(BaseModel):
    name: str
    material: str
    min_m: list[float]
    size_m: list[float]


class SensingUnitOut(BaseModel):
    id: str
    position_m: list[float]


class SubBandOut(BaseModel):
    id: int = Field(description="0 … subbands − 1, from the lowest frequency up")
    first_prb: int
    last_prb: int = Field(description="inclusive")
    center_hz: float
    width_hz: float


class BandPlanOut(BaseModel):
    """The monitored band (contracts.band_plan): an NR carrier split into groups of PRBs. Readings
    name the plan they were measured against by its fingerprint."""

    center_hz: float
    bandwidth_hz: float = Field(description="channel bandwidth")
    scs_hz: float = Field(description="subcarrier spacing")
    prbs: int = Field(description="PRBs of the carrier (12 subcarriers each), centred in the channel")
    subbands: int
    fingerprint: str = Field(description="what a reading carries in band_plan when measured against this plan")
    grid: list[SubBandOut]


class SiteOut(BaseModel):
    name: str
    description: str
    frequency_hz: float
    noise_floor_dbm: float
    hall_size_m: list[float]
    hall_material: str
    tx_plane_height_m: float
    obstacles: list[ObstacleOut]
    sensing_units: list[SensingUnitOut]
    band_plan: BandPlanOut


class LearnRequest(BaseModel):
    """Learn normal residual statistics from a period of normal operation (default: the last 60 s)."""

    model_config = STRICT
    duration_s: float | None = Field(None, gt=0, le=86_400, description="window ending now (or at until_ns)")
    since_ns: I63 | None = None
    until_ns: I63 | None = None
    detector: str | None = Field(None, description="detector kind (default: the config's)")
    target_far: float | None = Field(None, gt=0, lt=0.5, description="false-alarm rate per snapshot")
    contamination: float = Field(0.0, ge=0, lt=0.5, description="fraction of training outliers to drop")


class LearnOut(BaseModel):
    model_id: int
    detector: str
    threshold: float
    n_snapshots: int
    since_ns: int
    until_ns: int
    spectral_threshold: float | None = Field(None, description="the spectral test's threshold, when the window "
                                             "held enough snapshots with sub-band readings of the site's band plan")
    spectral_snapshots: int = 0


class ModelOut(BaseModel):
    """A fitted model and its provenance (site hash, twin key, data window, size)."""

    id: int
    kind: str
    path: str
    created_ns: int
    provenance: dict
    active: bool


# --------------------------------------------------------------------------------------- campaigns

BODY = STRICT
CampaignName = Annotated[str, Field(pattern=ID_PATTERN, description="1-64 of letters, digits, '-', '_', '.'")]
RefPower = Annotated[float, Field(ge=-50.0, le=60.0, description="reference transmitter EIRP, dBm")]
MAX_IMPORT_POINTS = 10_000


class CampaignStart(BaseModel):
    """Start a calibration campaign (only one is open at a time; names are never reused)."""

    model_config = BODY
    name: CampaignName = Field(examples=["survey-1"])
    description: str = Field("", max_length=500)


class CampaignOut(BaseModel):
    id: int
    name: str
    state: Literal["open", "closed"]
    description: str
    created_ns: int
    created_by: str
    closed_ns: int | None
    su_ids: list[str]
    n_points: int
    n_accepted: int
    n_rejected: int


class PointRequest(BaseModel):
    """The reference transmitter is in place: gather the nodes' readings over a window and store the
    point. Give ``dwell_s`` (window [now, now + dwell_s] on the central unit's clock) or an explicit
    ``since_ns``/``until_ns`` window (e.g. a scheduled slot); the request answers once the window has
    ended and the nodes' uploads have caught up (at most ``settle_s`` later).

    Exactly one of ``dwell_s`` or the pair ``since_ns``/``until_ns`` (the schema's ``oneOf``; null
    counts as absent). Checked in code (422): ``until_ns`` after ``since_ns``, the window at most 600 s
    long and ending at most 600 s from now, ``position_m`` inside the hall and outside every obstacle."""

    model_config = ConfigDict(**BODY, json_schema_extra={"oneOf": [
        {"required": ["dwell_s"], "properties": {"dwell_s": {"type": "number"}, "since_ns": {"type": "null"},
                                                 "until_ns": {"type": "null"}}},
        {"required": ["since_ns", "until_ns"], "properties": {"dwell_s": {"type": "null"},
                                                              "since_ns": {"type": "integer"},
                                                              "until_ns": {"type": "integer"}}},
    ]})  # fmt: skip
    position_m: Vec3 = Field(description="reference antenna [x, y, z] in hall coordinates, m")
    power_dbm: RefPower
    dwell_s: float | None = Field(None, gt=0, le=600, description="window length, s, from now")
    since_ns: T_NS | None = None
    until_ns: T_NS | None = None
    settle_s: float = Field(2.0, ge=0, le=60, description="extra wait for late uploads after the window, s")
    min_count: Annotated[int, Field(ge=1, le=100_000), INTEGRAL] = Field(1, description="readings an SU needs, or the point is rejected")


class SuReadingIO(BaseModel):
    """One SU at one point: mean power (dBm, averaged in mW), spread (dB), readings, saturated readings."""

    model_config = BODY
    su_id: str = Field(pattern=ID_PATTERN, examples=["su01"])
    mean_dbm: Power | None = Field(None, examples=[-60.0])
    std_db: float | None = Field(None, ge=0, le=100)
    count: Count = Field(examples=[10])
    saturated: Count = 0


class PointOut(BaseModel):
    campaign: str
    index: int
    position_m: list[float]
    power_dbm: float
    rejected: str = Field(description="why the point is not used; empty: usable")
    usable: bool
    since_ns: int | None
    until_ns: int | None
    source: Literal["live", "import"]
    created_ns: int
    readings: list[SuReadingIO]


class CampaignDetail(CampaignOut):
    points: list[PointOut]


class ImportedPoint(BaseModel):
    """A point measured elsewhere (positions logged by a robot or a total station). Checked in code
    (422, naming ``points[i]``): the position inside the hall and outside every obstacle, sensing units
    of the campaign each at most once, no ``count`` without a ``mean_dbm``, ``saturated`` at most ``count``."""

    model_config = BODY
    position_m: Vec3
    power_dbm: RefPower
    readings: list[SuReadingIO] = Field(min_length=1, max_length=1000)
    rejected: str = Field("", max_length=500, description="a reason from the file; empty: usable")


class CampaignImport(BaseModel):
    model_config = BODY
    points: list[ImportedPoint] = Field(min_length=1, max_length=MAX_IMPORT_POINTS)


class ImportOut(BaseModel):
    imported: int
    accepted: int
    rejected: int
    points: list[PointOut]


# ---------------------------------------------------------------------------------- LoS / NLoS

# JSON arrays for tuples (Strict(False) on the container only: the items stay strict numbers).
Point3 = Annotated[tuple[float, float, float], Strict(False), Field(examples=[EXAMPLE_POSITION])]


class ChannelEstimate(BaseModel):
    """An uplink channel estimate: antennas × subcarriers complex64, little-endian, row-major, base64.
    The shape must be the installed model's (422 otherwise)."""

    model_config = STRICT
    shape: Annotated[tuple[Annotated[int, Field(gt=0, le=4096), INTEGRAL],
                           Annotated[int, Field(gt=0, le=8192), INTEGRAL]], Strict(False)]  # fmt: skip
    data_b64: str = Field(..., min_length=1, description="8 bytes per entry (float32 real, float32 imaginary)")


class LosRequest(BaseModel):
    """Either a channel estimate (answered by the ONNX classifier, 503 while none is installed) or a UE
    position (answered from the twin's geometry, no model needed); exactly one of them (the schema's
    ``oneOf``; null counts as absent). Positions must be inside the hall and outside every obstacle (422)."""

    model_config = ConfigDict(**STRICT, json_schema_extra={"oneOf": [
        {"required": ["channel"], "properties": {"channel": {"type": "object"}, "position_m": {"type": "null"}}},
        {"required": ["position_m"], "properties": {"position_m": {"type": "array"}, "channel": {"type": "null"}}},
    ]})  # fmt: skip
    channel: ChannelEstimate | None = None
    position_m: Point3 | None = Field(None, description="UE position, m")
    gnb_position_m: Point3 | None = Field(None, description="gNB position, m (default: the installed model's, "
                                          "else the middle of the hall's ceiling, 0.2 m below it)")  # fmt: skip


class LosOut(BaseModel):
    los_probability: float
    los: bool
    source: Literal["model", "geometry"]
    blocked_by: str | None = None
    model: str | None = None


# ----------------------------------------------------------------------------- dashboard session


class LoginRequest(BaseModel):
    """A viewer or operator token, exchanged for the dashboard's session cookie."""

    model_config = STRICT
    token: str = Field(min_length=1, max_length=512, description="a viewer (rtv_…) or operator (rto_…) token")


class SessionOut(BaseModel):
    """The session the cookie stands for; ``csrf_token`` goes into ``X-CSRF-Token`` of every request
    that changes something."""

    name: str
    role: Literal["viewer", "operator"]
    csrf_token: str
    expires_in_s: float
