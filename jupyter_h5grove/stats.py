"""Statistics over the finite values of a selection, computed block by block.

h5grove loads the whole selection, masks it and calls NumPy on copies (several times the data
size in memory). Here blocks are folded into running count / mean / M2 (Chan et al.) and
min / max / positive minima, so memory stays bounded by the block size. Float32/64 and integer
pieces take a few in-cache NumPy passes and no copy: NaN-skipping fmin/fmax, then the sums of
(x - c) and (x - c)**2 around the piece's mid-range c (around its mean if c was far off), NaN
zeroed by index. When the selection is
one block the result is computed exactly as h5grove computes it; with several blocks ``mean``
and ``std`` agree within floating-point tolerance. Empty selections (also null dataspaces, on
which h5grove raises TypeError) give all-None statistics; non-numeric data raises
NonNumericDataError instead of NumPy's TypeError.

Complex data has no order, so its statistics are those of the modulus ``|z|`` (what H5Web
plots by default as "amplitude"): values whose real or imaginary part is NaN or infinite are
left out like non-finite reals. h5grove compares complex numbers lexicographically and
truncates the results to integers (or fails on NaN): meaningless numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import NonNumericDataError
from .models import Stats
from .typeinfo import is_numeric_dtype

SUB_BLOCK_BYTES = 256 * 1024
"""Piece of a block folded at once: small enough for NumPy's passes to stay in cache."""

EMPTY_STATS: Stats = {
    "strict_positive_min": None,
    "positive_min": None,
    "min": None,
    "max": None,
    "mean": None,
    "std": None,
}


def _cast(dtype: np.dtype) -> Any:
    """Python type of the results: float for floating data, int otherwise (as h5grove)."""
    return float if np.issubdtype(dtype, np.floating) else int


def modulus(data: Any) -> Any:
    """``|z|`` of complex data (float of the matching precision); other data unchanged."""
    values = np.asarray(data)
    return np.abs(values) if values.dtype.kind == "c" else data


def stats_dtype(dtype: np.dtype) -> np.dtype:
    """dtype the statistics are computed in: the modulus' for complex data."""
    return np.dtype(dtype.char.lower()) if dtype.kind == "c" else dtype


def finite_values(data: np.ndarray) -> np.ndarray:
    """The data without NaN and infinities (floating types only, as h5grove)."""
    if not np.issubdtype(data.dtype, np.floating):
        return data
    mask = np.isfinite(data)
    return data if mask.all() else data[mask]


def get_array_stats(data: np.ndarray) -> Stats:
    """Statistics of an in-memory array (h5grove-compatible, no NaN masking here; complex
    data: of its modulus)."""
    if data.size == 0:
        return dict(EMPTY_STATS)  # type: ignore[return-value]
    data = modulus(data)
    cast = _cast(data.dtype)
    strict = data[data > 0]
    positive = data[data >= 0]
    return {
        "strict_positive_min": cast(np.min(strict)) if strict.size else None,
        "positive_min": cast(np.min(positive)) if positive.size else None,
        "min": cast(np.min(data)),
        "max": cast(np.max(data)),
        "mean": cast(np.mean(data)),
        "std": cast(np.std(data)),
    }


def _lesser(a: Any, b: Any) -> Any:
    """Smaller of two scalars, None meaning absent."""
    if a is None:
        return b
    if b is None:
        return a
    return np.min(np.array([a, b]))


def _greater(a: Any, b: Any) -> Any:
    """Greater of two scalars (NumPy ordering)."""
    return b if a is None else np.max(np.array([a, b]))


def _masked_min(values: np.ndarray, mask: np.ndarray) -> Any:
    """Minimum of the values where mask is true (None if none), without copying them."""
    if not mask.any():
        return None
    if values.dtype.kind == "f":
        return np.min(values, where=mask, initial=np.inf).astype(values.dtype)
    if values.dtype.kind in "iu":
        return np.min(values, where=mask, initial=np.iinfo(values.dtype).max)
    return np.min(values[mask])


FLOAT32_MAX_SPREAD = 1e16
"""Widest float32 range folded in float32: squares of half of it, summed, stay finite."""


def _work_dtype(dtype: np.dtype) -> np.dtype | None:
    """dtype of the moments' work buffer for :meth:`StatsAccumulator._fold_fast`, if any."""
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return np.dtype(np.float32 if dtype.itemsize == 4 else np.float64)
    if dtype.kind in "iu":
        return np.dtype(np.float64)
    return None


def _positive_minima(values: np.ndarray, low: Any, high: Any) -> tuple[Any, Any]:
    """(strict positive min, positive min) of real values spanning 0; NaN are ignored."""
    # Values to exclude are lifted to the type's maximum, which cannot win the min.
    info = np.finfo if values.dtype.kind == "f" else np.iinfo
    top = values.dtype.type(info(values.dtype).max)
    smallest = np.fmin.reduce if values.dtype.kind == "f" else np.min
    positive = low if low == 0 else smallest(np.maximum(values, (values < 0) * top))
    strict = smallest(np.maximum(values, (values <= 0) * top)) if high > 0 else None
    return strict, positive


class StatsAccumulator:
    """Fold blocks of one dtype into statistics; memory is independent of the total size."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = stats_dtype(dtype)
        self._first: np.ndarray | None = None
        self._blocks = 0
        self.count = 0
        self.mean: Any = 0.0
        self.m2: Any = 0.0
        self.min: Any = None
        self.max: Any = None
        self.strict_positive_min: Any = None
        self.positive_min: Any = None
        self._work: np.ndarray | None = None

    def add(self, block: Any) -> None:
        """Fold one block (array or scalar) of the selection; the block may be kept until the
        next one arrives (a lone block is computed exactly as h5grove at the end)."""
        values = np.asarray(block)
        if values.size and not is_numeric_dtype(values.dtype):
            # An empty selection of any type has all-None stats, as in h5grove.
            raise NonNumericDataError(f"Statistics need numeric data, not dtype {values.dtype}")
        values = modulus(values)
        self._blocks += 1
        if self._blocks == 1:
            self._first = values  # One block only: computed exactly as h5grove at the end.
            return
        if self._first is not None:
            self._fold_block(self._first)
            self._first = None
        self._fold_block(values)

    def fold(self, block: np.ndarray) -> None:
        """Fold a numeric block now, keeping no reference to it (its buffer may be reused)."""
        self._blocks += 2  # Never the single-block exact path.
        if self._first is not None:
            self._fold_block(self._first)
            self._first = None
        self._fold_block(block)

    def _fold_block(self, values: np.ndarray) -> None:
        """Fold a block in cache-sized pieces (each NumPy pass then stays in the CPU cache)."""
        flat = values.reshape(-1)
        step = max(1, SUB_BLOCK_BYTES // max(1, flat.itemsize))
        work = _work_dtype(flat.dtype)
        if work is not None:
            size = min(step, flat.size)
            if self._work is None or self._work.dtype != work or self._work.size < size:
                self._work = np.empty(size, work)
            fold: Any = self._fold_fast
        else:
            fold = self._fold_real if flat.dtype.kind in "fiu" else self._fold
        for start in range(0, flat.size, step):
            fold(flat[start : start + step])

    def _fold_fast(self, values: np.ndarray) -> None:
        """_fold for float32/64 and ints: min/max, then shifted moments in one work buffer.

        NaN are skipped by fmin/fmax and zeroed in the deviations (no compressed copy);
        infinities (rare) take the general path.
        """
        if values.dtype.kind == "f":
            low, high = np.fmin.reduce(values), np.fmax.reduce(values)
            if not (np.isfinite(low) and np.isfinite(high)):
                if np.isnan(low) and np.isnan(high):
                    return  # Only NaN.
                self._fold_real(values)  # Infinities: mask them the slow way.
                return
            nans = np.flatnonzero(np.isnan(values))
        else:
            low, high = np.min(values), np.max(values)
            nans = None
        spread = float(high) - float(low)
        assert self._work is not None
        if self._work.dtype.itemsize == 4 and spread > FLOAT32_MAX_SPREAD:
            self._fold_real(values)  # Squares would overflow float32: use float64.
            return
        count = values.size - (nans.size if nans is not None else 0)
        center = float(low) / 2 + float(high) / 2
        s1, s2 = self._shifted_sums(values, center, nans)
        if s1 * s1 > 0.5 * count * s2:  # Shift far from the mean: redo around the mean.
            center += s1 / count
            s1, s2 = self._shifted_sums(values, center, nans)
        self._merge(count, center + s1 / count, max(0.0, s2 - s1 * s1 / count))
        self._merge_extrema(values, low, high)

    def _shifted_sums(
        self, values: np.ndarray, center: float, nans: np.ndarray | None
    ) -> tuple[float, float]:
        """Sums of (x - center) and (x - center)**2 over the non-NaN values (pairwise sums)."""
        assert self._work is not None
        work = self._work[: values.size]
        np.subtract(values, work.dtype.type(center), out=work)
        if nans is not None and nans.size:
            work[nans] = 0
        s1 = float(np.add.reduce(work))
        np.square(work, out=work)
        return s1, float(np.add.reduce(work))

    def _merge(self, n: int, mean: float, m2: float) -> None:
        """Merge a piece's count, mean and M2 into the running ones (Chan et al.)."""
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + abs(delta) ** 2 * (self.count * n / total)
        self.count = total

    def _fold_real(self, values: np.ndarray) -> None:
        """_fold for ints and floats: branch-free NumPy passes (masked selections are slow)."""
        low, high = np.min(values), np.max(values)
        if values.dtype.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
            values = values[np.isfinite(values)]
            if values.size == 0:
                return
            low, high = np.min(values), np.max(values)
        self._merge_moments(values)
        self._merge_extrema(values, low, high)

    def _merge_extrema(self, values: np.ndarray, low: Any, high: Any) -> None:
        """Merge a real piece's min, max and positive minima (low, high: its finite extrema)."""
        self.min = _lesser(self.min, low)
        self.max = _greater(self.max, high)
        if high < 0:
            return
        if low > 0:
            strict = positive = low
        else:
            strict, positive = _positive_minima(values, low, high)
        self.strict_positive_min = _lesser(self.strict_positive_min, strict)
        self.positive_min = _lesser(self.positive_min, positive)

    def _merge_moments(self, values: np.ndarray) -> None:
        """Merge count, mean and M2 of finite values (Chan et al.'s parallel update)."""
        n = values.size
        wide = np.float64 if values.dtype.itemsize <= 8 else values.dtype.type
        deviations = values.astype(wide)  # Casting once is much faster than ufunc dtype=.
        mean = np.add.reduce(deviations) / n
        deviations -= mean
        deviations *= deviations
        self._merge(n, mean, np.add.reduce(deviations))

    def _fold(self, values: np.ndarray) -> None:
        """Merge one piece's moments and extrema (generic: bool, long double)."""
        values = finite_values(values)
        if values.size == 0:
            return
        self._merge_moments(values)
        self.min = _lesser(self.min, np.min(values))
        self.max = _greater(self.max, np.max(values))
        self.strict_positive_min = _lesser(
            self.strict_positive_min, _masked_min(values, values > 0)
        )
        self.positive_min = _lesser(self.positive_min, _masked_min(values, values >= 0))

    def result(self) -> Stats:
        """The statistics of everything added so far."""
        if self._first is not None:
            return get_array_stats(finite_values(self._first))
        if self.count == 0:
            return dict(EMPTY_STATS)  # type: ignore[return-value]
        cast = _cast(self.dtype)

        def opt(value: Any) -> Any:
            return None if value is None else cast(value)

        return {
            "strict_positive_min": opt(self.strict_positive_min),
            "positive_min": opt(self.positive_min),
            "min": cast(self.min),
            "max": cast(self.max),
            "mean": cast(self.mean),
            "std": cast(math.sqrt(float(self.m2) / self.count)),
        }


def blockwise_stats(blocks: Iterable[Any], dtype: np.dtype) -> Stats:
    """Statistics of the finite values of all blocks, in bounded memory."""
    accumulator = StatsAccumulator(dtype)
    for block in blocks:
        accumulator.add(block)
    return accumulator.result()
