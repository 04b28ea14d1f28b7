"""Node config files for tests: a valid simulated node, written as TOML so the real loader reads it."""

from __future__ import annotations

from pathlib import Path


def simulated_node_toml(node_id: str = "su01", url: str | None = "http://127.0.0.1:9", token: str = "secret-su01",
                        interval_s: float = 0.05, extra: str = "", emitter_dbm: float = -60.0,
                        samples: int = 16384, timeout_s: float = 2.0) -> str:  # fmt: skip
    central = f'url = "{url}"\n' if url else ""
    return f"""
node_id = "{node_id}"
position_m = [6.5, 29.5, 1.5]
interval_s = {interval_s}
state_dir = "state-{node_id}"

[radio]
backend = "simulated"
center_hz = 3.7e9
sample_rate_hz = 30.72e6
gain_db = 30.0
samples_per_reading = {samples}

[radio.args]
seed = 3
noise_figure_db = 5.0

[[radio.args.emitters]]
power_dbm = {emitter_dbm}
bandwidth_hz = 18e6
waveform = "ofdm"

[band]
bandwidth_hz = 20e6

[[band.subbands]]
offset_hz = -5e6
bandwidth_hz = 8e6

[central]
{central}token = "{token}"
timeout_s = {timeout_s}
backoff_initial_s = 0.05
backoff_max_s = 0.2
{extra}
"""


def write_config(directory: Path, text: str, name: str = "node.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path
