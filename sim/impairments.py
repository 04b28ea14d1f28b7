"""What a real sensing unit's readings carry besides the hall's path gains.

A twin predicts a node's power from the geometry; a real node also sees the residual of fading
over its buffer and people and forklifts moving (a random dB term per reading), a gain that drifts
slowly with the temperature in its enclosure, and now and then no reading at all (a USB reset, a
power blip, a node rebooting). The simulated world applies these to the IQ it synthesises, so the
central unit's statistics face them the way they would face a real hall.

Every term is a deterministic function of (seed, SU, scenario time) or drawn from the node's own
generator, so separate node processes need nothing but the world file to agree on the world.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Impairments:
    """Per-SU impairments (dB, s). The defaults are none: the in-model reference world."""

    reading_noise_db: float = 0.0  # std of a per-reading, per-emitter gain term (fading residual, movement)
    drift_db: float = 0.0  # amplitude of a slow sinusoidal gain drift, its phase drawn per SU
    drift_period_s: float = 3600.0
    dropout_per_h: float = 0.0  # expected dropouts per SU and hour
    dropout_s: float = 20.0  # how long one lasts
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("reading_noise_db", "drift_db", "dropout_per_h"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {getattr(self, name)}")
        for name in ("drift_period_s", "dropout_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be finite and > 0, got {getattr(self, name)}")
        if self.dropout_per_h * self.dropout_s / 3600.0 > 0.5:
            raise ValueError("dropout_per_h × dropout_s covers more than half of the time: not a dropout any more")

    def gain_drift_db(self, su_id: str, t_s: float) -> float:
        """The SU's drift at scenario time ``t_s``: ``drift_db · sin(2π t / period + φ_SU)``."""
        if self.drift_db == 0.0:
            return 0.0
        phase = 2 * math.pi * self._uniform(su_id, "drift-phase")
        return self.drift_db * math.sin(2 * math.pi * t_s / self.drift_period_s + phase)

    def dropped_out(self, su_id: str, t_s: float) -> bool:
        """Whether the SU gives no reading at ``t_s``: time is cut into ``dropout_s`` slots, and each slot
        is a dropout with probability ``dropout_per_h · dropout_s / 3600`` (independent per SU and slot)."""
        if self.dropout_per_h == 0.0:
            return False
        slot = math.floor(t_s / self.dropout_s)
        return self._uniform(su_id, f"dropout-{slot}") < self.dropout_per_h * self.dropout_s / 3600.0

    def reading_noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` per-reading gain terms (dB), one per received emitter."""
        return rng.normal(0.0, self.reading_noise_db, n) if self.reading_noise_db > 0 else np.zeros(n)

    def _uniform(self, su_id: str, what: str) -> float:
        h = hashlib.blake2b(f"{self.seed}/{su_id}/{what}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "big") / 2.0**64

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Impairments:
        """From a world file's metadata (absent: none, as worlds written before impairments)."""
        if not d:
            return cls()
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown impairment fields {sorted(unknown)}")
        return cls(**d)
