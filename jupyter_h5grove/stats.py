"""Statistics over the finite values of a selection, computed block by block.

h5grove loads the whole selection, masks it and calls NumPy on copies (several times the data
size in memory). Here blocks are folded into running count / mean / M2 (Chan et al.) and
min / max / positive minima, so memory stays bounded by the block size. When the selection is
one block the result is computed exactly as h5grove computes it; with several blocks ``mean``
and ``std`` agree within floating-point tolerance. Empty selections (also null dataspaces, on
which h5grove raises TypeError) give all-None statistics; non-numeric data raises
NonNumericDataError instead of NumPy's TypeError.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import NonNumericDataError
from .models import Stats
from .typeinfo import is_numeric_dtype

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
    return float if np.issubdtype(dtype, np.floating) else _to_int


def _to_int(value: Any) -> int | None:
    """int() of a NumPy scalar; complex values keep their (truncated) real part like h5grove.

    A non-finite value (NaN in complex data, which is not masked) gives None where h5grove
    raises ValueError.
    """
    real = np.real(value)
    return int(real) if np.isfinite(real) else None


def finite_values(data: np.ndarray) -> np.ndarray:
    """The data without NaN and infinities (floating types only, as h5grove)."""
    if not np.issubdtype(data.dtype, np.floating):
        return data
    mask = np.isfinite(data)
    return data if mask.all() else data[mask]


def get_array_stats(data: np.ndarray) -> Stats:
    """Statistics of an in-memory array (h5grove-compatible, no NaN masking here)."""
    if data.size == 0:
        return dict(EMPTY_STATS)  # type: ignore[return-value]
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
    """Smaller of two scalars, None meaning absent (NumPy ordering, also for complex)."""
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


class StatsAccumulator:
    """Fold blocks of one dtype into statistics; memory is independent of the total size."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self._first: np.ndarray | None = None
        self._blocks = 0
        self.count = 0
        self.mean: Any = 0.0
        self.m2: Any = 0.0
        self.min: Any = None
        self.max: Any = None
        self.strict_positive_min: Any = None
        self.positive_min: Any = None

    def add(self, block: Any) -> None:
        """Fold one block (array or scalar) of the selection."""
        values = np.asarray(block)
        if values.size and not is_numeric_dtype(values.dtype):
            # An empty selection of any type has all-None stats, as in h5grove.
            raise NonNumericDataError(f"Statistics need numeric data, not dtype {values.dtype}")
        values = finite_values(values)
        self._blocks += 1
        if self._blocks == 1:
            self._first = values  # One block only: computed exactly as h5grove at the end.
            return
        if self._first is not None:
            self._fold(self._first)
            self._first = None
        self._fold(values)

    def _fold(self, values: np.ndarray) -> None:
        """Merge one block's moments and extrema into the running ones."""
        n = values.size
        if n == 0:
            return
        wide = np.complex128 if np.iscomplexobj(values) else np.float64
        if values.dtype.itemsize > 8 and values.dtype.kind in "fc":
            wide = values.dtype.type
        mean = np.mean(values, dtype=wide)
        deviations = np.subtract(values, mean, dtype=wide).ravel()
        m2 = np.vdot(deviations, deviations).real  # One temporary, no squares array.
        del deviations
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + abs(delta) ** 2 * (self.count * n / total)
        self.count = total
        self.min = _lesser(self.min, np.min(values))
        self.max = _greater(self.max, np.max(values))
        self.strict_positive_min = _lesser(
            self.strict_positive_min, _masked_min(values, values > 0)
        )
        self.positive_min = _lesser(self.positive_min, _masked_min(values, values >= 0))

    def result(self) -> Stats:
        """The statistics of everything added so far."""
        if self._first is not None:
            return get_array_stats(self._first)
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
            "std": cast(math.sqrt(float(np.real(self.m2)) / self.count)),
        }


def blockwise_stats(blocks: Iterable[Any], dtype: np.dtype) -> Stats:
    """Statistics of the finite values of all blocks, in bounded memory."""
    accumulator = StatsAccumulator(dtype)
    for block in blocks:
        accumulator.add(block)
    return accumulator.result()
