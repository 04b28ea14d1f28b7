"""The node config file: a good one loads with its defaults; a bad one fails with the file and key named."""

from __future__ import annotations

import pytest

from node.config import ConfigError, load_config
from tests.node_configs import simulated_node_toml, write_config


def test_a_simulated_node_config_loads_with_defaults(tmp_path):
    cfg = load_config(write_config(tmp_path, simulated_node_toml()))
    assert cfg.node_id == "su01" and cfg.position_m == (6.5, 29.5, 1.5)
    assert cfg.radio.backend == "simulated" and cfg.radio.args["emitters"][0]["power_dbm"] == -60.0
    assert cfg.band.band.bandwidth_hz == 20e6 and cfg.band.subbands[0].offset_hz == -5e6
    assert cfg.state_dir == tmp_path / "state-su01"  # relative to the config file
    assert cfg.spool.path == tmp_path / "state-su01" / "spool.db" and cfg.spool.policy == "drop_oldest"
    assert cfg.central.url == "http://127.0.0.1:9" and cfg.central.batch_max_records == 500
    assert cfg.calibration is None  # the simulated receiver's nominal table is used


def test_token_can_come_from_a_file(tmp_path):
    (tmp_path / "token").write_text("from-file\n")
    text = simulated_node_toml().replace('token = "secret-su01"', 'token_file = "token"')
    assert load_config(write_config(tmp_path, text)).central.token == "from-file"


def test_no_url_means_discovery(tmp_path):
    assert load_config(write_config(tmp_path, simulated_node_toml(url=None))).central.url is None


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('node_id = "su01"', 'node_id = "../etc"', "node_id: must be"),
        ("position_m = [6.5, 29.5, 1.5]", "position_m = [6.5, 29.5]", "position_m: expected 3 numbers"),
        ("interval_s = 0.05", "interval_s = 0", "interval_s: 0 is outside"),
        ('backend = "simulated"', 'backend = "hackrf"', "radio.backend: 'hackrf' is not one of"),
        ("gain_db = 30.0", 'gain_db = "30"', "radio.gain_db: expected a finite number"),
        ("sample_rate_hz = 30.72e6", "sampel_rate_hz = 30.72e6", "radio.sample_rate_hz: missing"),
        ("bandwidth_hz = 20e6\n", "bandwidth_hz = 40e6\n", "band.bandwidth_hz: band: .* leaves the usable span"),
        ("samples_per_reading = 16384", "samples_per_reading = 512", "samples_per_reading: shorter than one Welch"),
        ('url = "http://127.0.0.1:9"', 'url = "ftp://x"', "central.url: must start with http"),
        ('token = "secret-su01"', "", "central.token: give exactly one of token or token_file"),
        ("backoff_max_s = 0.2", "backoff_max_s = 0.01", "backoff_max_s: must be >= backoff_initial_s"),
        ("timeout_s = 2.0", "timeout_s = 2.0\nretries = 3", "central.retries: unknown key"),
        ("waveform = \"ofdm\"", "waveform = \"ofdm\"\n[spool]\npolicy = \"lifo\"", "spool.policy: 'lifo' is not one of"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, old, new, message):
    text = simulated_node_toml()
    assert old in text
    with pytest.raises(ConfigError, match=message) as e:
        load_config(write_config(tmp_path, text.replace(old, new, 1)))
    assert str(e.value).startswith(str(tmp_path / "node.toml"))


def plan_config(sample_rate_hz: float = 122.88e6, plan: str = "center_hz = 3.7e9\nsubbands = 16") -> str:
    text = simulated_node_toml().replace("sample_rate_hz = 30.72e6", f"sample_rate_hz = {sample_rate_hz:g}")
    return text[: text.index("[band]")] + f"[band]\n[band.plan]\n{plan}\n\n" + text[text.index("[central]"):]


def test_a_band_plan_gives_the_node_the_sites_sub_bands_and_names_itself_in_readings(tmp_path):
    from contracts.band_plan import BandPlan
    from node.measure import Measurer
    from node.sdr.open import calibration_for, open_backend

    cfg = load_config(write_config(tmp_path, plan_config()))
    plan = BandPlan(3.7e9)
    assert cfg.band_plan == plan and cfg.band.band_plan == plan.fingerprint
    assert cfg.band.band.bandwidth_hz == pytest.approx(98.28e6) and len(cfg.band.subbands) == 16
    assert [b.offset_hz for b in cfg.band.subbands] == pytest.approx([b.center_hz - 3.7e9 for b in plan.grid])
    radio = open_backend(cfg)
    try:
        m = Measurer(cfg.node_id, radio, cfg.band, calibration_for(cfg), cfg.radio.samples_per_reading).read().measurement
    finally:
        radio.close()
    assert m.band_plan == plan.fingerprint and len(m.subband_powers_dbm) == 16


def test_a_band_plan_wider_than_the_radio_is_swept_and_one_it_cannot_sweep_or_beside_explicit_bands_is_refused(tmp_path):
    cfg = load_config(write_config(tmp_path, plan_config(30.72e6)))  # 98.28 MHz, the radio's usable 24.576 MHz
    assert cfg.sweep is not None and len(cfg.sweep.steps) == 5 and cfg.band == cfg.sweep.steps[0].band
    with pytest.raises(ConfigError, match=r"band\.plan: the band plan's 98\.28 MHz .* cannot be swept: sub-band 0 "
                                          r"\(PRBs 0–16\) is 6\.12 MHz wide, wider than the radio's usable 4\.8 MHz"):
        load_config(write_config(tmp_path, plan_config(6e6)))
    with pytest.raises(ConfigError, match="band.plan: band.subbands must be a whole number"):
        load_config(write_config(tmp_path, plan_config(plan="center_hz = 3.7e9\nsubbands = 0")))
    both = simulated_node_toml().replace("[band]\n", "[band]\nplan = { center_hz = 3.7e9 }\n")
    with pytest.raises(ConfigError, match="give either"):
        load_config(write_config(tmp_path, both))


def test_a_real_radio_without_calibration_is_refused(tmp_path):
    text = simulated_node_toml().replace('backend = "simulated"', 'backend = "pluto"')
    with pytest.raises(ConfigError, match="calibration: required for the pluto backend"):
        load_config(write_config(tmp_path, text))


def test_calibration_table_from_a_file_must_cover_the_tuning(tmp_path):
    (tmp_path / "cal.toml").write_text("frequencies_hz = [3.6e9, 3.8e9]\ngains_db = [20.0, 40.0]\n"
                                       "offsets_db = [[-40.0, -60.0], [-41.0, -61.0]]\n")  # fmt: skip
    text = simulated_node_toml().replace('backend = "simulated"', 'backend = "pluto"') + '\n[calibration]\nfile = "cal.toml"\n'
    cfg = load_config(write_config(tmp_path, text))
    assert cfg.calibration.offset_db(3.7e9, 30.0) == pytest.approx(-50.5)
    with pytest.raises(ConfigError, match="does not cover"):
        load_config(write_config(tmp_path, text.replace("gain_db = 30.0", "gain_db = 50.0")))


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write_config(tmp_path, "node_id = "))
    (tmp_path / "empty-token").write_text("\n")
    text = simulated_node_toml().replace('token = "secret-su01"', 'token_file = "empty-token"')
    with pytest.raises(ConfigError, match="is empty"):
        load_config(write_config(tmp_path, text))
