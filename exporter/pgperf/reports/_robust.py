"""Robust statistics over (time, value) arrays shared by the forecasts and the seasonal baselines.

Times are epoch seconds (float64), values float64; every function is pure and vectorised
with numpy. Medians and the MAD (median absolute deviation) are used instead of means and
standard deviations because monitoring series carry spikes (a batch, a lock wait) that
must not move a baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ._numpy import np

if TYPE_CHECKING:  # the array types are annotations only: numpy is imported at first use
    from typing import TypeAlias

    import numpy.typing as npt

    FloatArray: TypeAlias = npt.NDArray[np.float64]
    IntArray: TypeAlias = npt.NDArray[np.int64]

__all__ = ["MAD_SCALE", "as_arrays", "group_max", "group_medians", "mad", "to_datetime"]

# 1.4826 * MAD estimates the standard deviation of normally distributed values.
MAD_SCALE = 1.4826


def as_arrays(times: Sequence[datetime] | FloatArray, values: Sequence[float | None] | FloatArray) -> tuple[FloatArray, FloatArray]:
    """Epoch seconds and values as float arrays, sorted by time, without missing values.

    ``times`` are timezone-aware datetimes or epoch seconds; a value of ``None`` or NaN
    (a sample without the figure) is left out with its time.
    """
    if len(times) != len(values):
        raise ValueError(f"times and values differ in length ({len(times)} times, {len(values)} values)")
    if isinstance(times, np.ndarray):
        t = np.asarray(times, dtype=np.float64)
    else:
        naive = next((at for at in times if at.tzinfo is None), None)
        if naive is not None:
            raise ValueError(f"time {naive.isoformat()} has no time zone; pass aware datetimes (UTC) or epoch seconds")
        t = np.fromiter((at.timestamp() for at in times), dtype=np.float64, count=len(times))
    y = np.array([np.nan if v is None else v for v in values], dtype=np.float64) if not isinstance(values, np.ndarray) \
        else np.asarray(values, dtype=np.float64)
    keep = np.isfinite(t) & np.isfinite(y)
    t, y = t[keep], y[keep]
    order = np.argsort(t, kind="stable")
    return t[order], y[order]


def to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def mad(values: FloatArray, center: float | None = None) -> float:
    """The median absolute deviation from ``center`` (the median by default); 0 for no values."""
    if values.size == 0:
        return 0.0
    c = float(np.median(values)) if center is None else center
    return float(np.median(np.abs(values - c)))


def group_medians(keys: IntArray, values: FloatArray, groups: int) -> tuple[FloatArray, IntArray]:
    """The median of ``values`` per key in ``range(groups)`` (NaN for an empty group), and the counts.

    One sort for all groups: values are ordered by (key, value), and each group's median is
    read at the middle of its run.
    """
    counts = np.bincount(keys, minlength=groups).astype(np.int64)
    medians = np.full(groups, np.nan)
    if values.size == 0:
        return medians, counts
    order = np.lexsort((values, keys))
    ordered = values[order]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    present = counts > 0
    lo = starts[present] + (counts[present] - 1) // 2
    hi = starts[present] + counts[present] // 2
    medians[present] = (ordered[lo] + ordered[hi]) / 2
    return medians, counts


def group_max(keys: IntArray, values: FloatArray, times: FloatArray, groups: int) -> tuple[FloatArray, FloatArray]:
    """The largest value per key in ``range(groups)`` and the time it was seen (NaN for empty groups).

    Of equal values the earliest is taken, as the anomaly SQL does.
    """
    peaks = np.full(groups, np.nan)
    at = np.full(groups, np.nan)
    if values.size == 0:
        return peaks, at
    # Ordered by key, then value descending, then time: the first row of each key is its peak.
    order = np.lexsort((times, -values, keys))
    k = keys[order]
    first = np.concatenate(([True], k[1:] != k[:-1]))
    peaks[k[first]] = values[order][first]
    at[k[first]] = times[order][first]
    return peaks, at
