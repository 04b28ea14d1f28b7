"""Temporal integration of snapshot scores: a CUSUM, so a persistent jammer too weak for one snapshot
is still found, and the rare normal snapshot that crosses a per-snapshot threshold pages no one.

Why: snapshots come at 10 Hz, 864 000 a day. A per-snapshot false-alarm rate of 1 % with 2-of-3
hysteresis still raised about 2000 alarms a day in the replay of normal operation
(``python bench/replay.py --integration none``), and the per-snapshot rate that would give one a day leaves a weak
jammer unseen. A jammer, unlike a noise spike, lasts: evidence summed over time separates the two.

Each score is first put on one scale, z = Φ⁻¹(F₀(score)) with F₀ the detector's training scores
(:meth:`models.detectors.base.ResidualDetector.normal_scores`), so z ~ N(0, 1) in normal operation
whatever the detector. Then Page's CUSUM:

    S_t = min(ceiling, max(0, S_{t−1} + z_t − drift)),   anomalous while S_t > threshold.

- ``drift`` (z units) is half the mean shift the test is tuned to: a jammer that moves z from 0 to
  2·drift is found fastest. A strong jammer (z ≫ drift) crosses in ⌈threshold / (z − drift)⌉ snapshots.
- ``threshold`` sets the false-alarm rate: for independent normal z the mean time between crossings
  grows like exp(2·drift·threshold). Residuals are not independent in time (slow drift, an AGV parked
  where the twin is wrong), so the product's values are chosen on a replayed validation day
  (``bench/operating_point.py``) rather than from that formula.
- ``ceiling``: S never exceeds it, so after a strong jammer leaves, S is below the threshold again
  within (ceiling − threshold) / drift snapshots instead of paying back minutes of evidence.
- The onset (change-point estimate) is the time of the first snapshot after S was last 0: an alarm
  starts when the emission started, not when enough evidence had piled up.
- A snapshot without a score (``None``: no detector, too few SUs) leaves S as it is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CusumSettings:
    drift: float  # z units (standard deviations of a normal snapshot's score)
    threshold: float  # z units; the product's pair: central.config.DEFAULT_CUSUM_*
    ceiling: float | None = None  # None: twice the threshold

    def __post_init__(self):
        if not self.drift > 0 or not self.threshold > 0:
            raise ValueError(f"CUSUM drift and threshold must be > 0, got {self.drift}, {self.threshold}")
        if self.ceiling is not None and not self.ceiling > self.threshold:
            raise ValueError(
                f"CUSUM ceiling must be above its threshold {self.threshold}, got {self.ceiling}"
            )

    @property
    def top(self) -> float:
        return 2.0 * self.threshold if self.ceiling is None else self.ceiling


def cusum_step(statistic: float, z: float, drift: float, ceiling: float) -> float:
    """One step of the clipped CUSUM recurrence (the module docstring)."""
    return min(ceiling, max(0.0, statistic + z - drift))


@dataclass(frozen=True)
class CusumState:
    statistic: float  # S_t (z units)
    anomalous: bool  # S_t > threshold
    onset_ns: int | None  # first snapshot after S was last 0; None while S is 0


class Cusum:
    """The running CUSUM of one stream of normal-scale scores (z)."""

    def __init__(self, settings: CusumSettings):
        self.settings = settings
        self.statistic = 0.0
        self.onset_ns: int | None = None

    def reset(self) -> None:
        self.statistic, self.onset_ns = 0.0, None

    def update(self, t_ns: int, z: float | None) -> CusumState:
        st = self.settings
        if z is not None:
            if self.statistic == 0.0:
                self.onset_ns = t_ns
            self.statistic = cusum_step(self.statistic, z, st.drift, st.top)
            if self.statistic == 0.0:
                self.onset_ns = None
        return CusumState(self.statistic, self.statistic > st.threshold, self.onset_ns)
