"""Open the configured SDR backend, tuned and at its gain, from a node's ``[radio]`` section.

Backend modules are imported only when chosen, so a node without pyadi-iio or SoapySDR installed
runs the other backends. ``[radio.args]`` is validated here, per backend, with the same errors as
the rest of the config file.
"""

from __future__ import annotations

from contracts.toml_fields import Fields
from node.calibration_table import CalibrationTable
from node.config import NodeConfig
from node.sdr.base import DiscardAfterRetune, SdrBackend


def open_backend(cfg: NodeConfig) -> SdrBackend:
    """The radio, tuned to ``radio.center_hz`` at ``radio.sample_rate_hz`` with ``radio.gain_db`` (a
    sweeping node: to its first step), discarding ``radio.discard_buffers_after_retune`` buffers after
    every retune whatever the backend (``[radio.args] discard_buffers_after_retune``, where the Pluto and
    SoapySDR backends took it before, still wins for them)."""
    radio = cfg.radio
    args = Fields(radio.args, "radio.args", cfg.source, cfg.base_dir)
    discard = radio.discard_buffers_after_retune

    def backend_discard() -> int:
        return args.integer("discard_buffers_after_retune", 0, 100, default=2 if discard is None else discard)

    if radio.backend == "pluto":
        from node.sdr.pluto import PlutoSdr

        sdr = PlutoSdr(
            args.string("uri", "ip:192.168.2.1"),
            discard_buffers_after_retune=backend_discard(),
            reconnect_attempts=args.integer("reconnect_attempts", 1, 1000, default=5),
            reconnect_delay_s=args.real("reconnect_delay_s", 0.0, 600.0, default=1.0),
        )
    elif radio.backend == "soapy":
        from node.sdr.soapy import SoapySdr

        sdr = SoapySdr(
            args.raw("device", ""),  # "driver=audio,..." or a table of key = "value"
            channel=args.integer("channel", 0, 64, default=0),
            antenna=args.optional_string("antenna"),
            stream_args=args.optional_string("stream_args"),  # e.g. "chan=stereo_iq" for the audio driver
            discard_buffers_after_retune=backend_discard(),
            read_timeout_s=args.real("read_timeout_s", 0.001, 60.0, default=0.5),
            max_retries=args.integer("max_retries", 0, 1000, default=5),
        )
    else:
        sdr = _simulated(cfg, args)
        if discard:  # a simulated radio has no LO to settle: none by default, the count when configured
            sdr = DiscardAfterRetune(sdr, discard)
    args.reject_unknown()
    center_hz = cfg.sweep.steps[0].center_hz if cfg.sweep is not None else radio.center_hz
    sdr.tune(center_hz, radio.sample_rate_hz)
    sdr.set_gain(radio.gain_db)
    return sdr


def _receiver(args: Fields):
    from node.sdr.simulated import ReceiverModel

    return ReceiverModel(
        noise_figure_db=args.real("noise_figure_db", 0.0, 30.0, default=5.0),
        full_scale_dbm_at_0db=args.real("full_scale_dbm_at_0db", -100.0, 30.0, default=-10.0),
    )


def _simulated(cfg: NodeConfig, args: Fields) -> SdrBackend:
    """A simulated radio: fixed emitters from ``[[radio.args.emitters]]``, or the simulated world
    (true gain maps + scenario) when ``world`` and ``scenario`` are given."""
    from node.sdr.simulated import Emitter, SimulatedSdr

    receiver = _receiver(args)
    seed = args.integer("seed", 0, 2**63 - 1, default=0) if args.has("seed") else args.raw("seed")
    if args.has("world") or args.has("scenario"):
        from sim.world import SimulatedWorldSdr, World  # simulation: only for a radio with a world

        world = World.load(args.path("world"), args.path("scenario"))
        return SimulatedWorldSdr(
            world,
            args.string("su_id", cfg.node_id),
            receiver=receiver,
            seed=seed,
            gain_offset_db=args.real("gain_offset_db", -40.0, 40.0) if args.has("gain_offset_db") else None,
            start_time_s=args.real("start_time_s", 0.0, 1e11) if args.has("start_time_s") else None,
        )
    emitters = []
    for e in args.subs("emitters"):
        emitters.append(Emitter(
            power_dbm=e.real("power_dbm", -200.0, 60.0),
            offset_hz=e.real("offset_hz", -1e9, 1e9, default=0.0),
            bandwidth_hz=e.real("bandwidth_hz", 1.0, 1e9, default=10e6),
            waveform=e.string("waveform", "ofdm", choices=("ofdm", "noise", "tone", "sweep")),  # type: ignore[arg-type]
            duty_cycle=e.real("duty_cycle", 1e-6, 1.0, default=1.0),
            period_s=e.real("period_s", 1e-7, 3600.0, default=1e-3),
        ))  # fmt: skip
        e.reject_unknown()
    center = args.real("emitters_center_hz", 1e6, 1e11) if args.has("emitters_center_hz") else None
    return SimulatedSdr(emitters, receiver, seed=seed, emitters_center_hz=center)


def calibration_for(cfg: NodeConfig) -> CalibrationTable:
    """The configured dBFS→dBm table; the simulated receiver's nominal one when none is configured
    (the config loader refuses a real radio without a table)."""
    if cfg.calibration is not None:
        return cfg.calibration
    return _receiver(Fields(cfg.radio.args, "radio.args", cfg.source)).nominal_calibration()
