"""Selections checked against h5py itself: same accept/refuse decision, shape and values."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_h5grove import errors
from jupyter_h5grove.content import DatasetContent, create_content
from jupyter_h5grove.selection import plan_blocks, select

SHAPES = [(), (0,), (5,), (3, 4), (2, 0, 3), (2, 3, 1, 4)]

bound = st.one_of(st.just(""), st.integers(-7, 7).map(str))
member = st.one_of(
    st.integers(-7, 7).map(str),
    st.tuples(bound, bound).map(":".join),
    st.tuples(bound, bound, st.one_of(st.just(""), st.integers(-1, 3).map(str))).map(":".join),
    st.sampled_from(["x", "1.5", " ", "1:2:3:4", "--1", "0x2"]),
)
selection_text = st.lists(member, min_size=1, max_size=5).map(",".join)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, ...], DatasetContent]:
    """One dataset per shape, values = their flat index."""
    path = tmp_path_factory.mktemp("sel") / "sel.h5"
    with h5py.File(path, "w") as f:
        for i, shape in enumerate(SHAPES):
            f[f"d{i}"] = np.arange(int(np.prod(shape)), dtype="i4").reshape(shape)
    f = h5py.File(path, "r")
    result = {}
    for i, shape in enumerate(SHAPES):
        content = create_content(f, f"/d{i}")
        assert isinstance(content, DatasetContent)
        result[shape] = content
    return result


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=selection_text, shape_index=st.integers(0, len(SHAPES) - 1))
def test_same_decision_as_h5py(
    datasets: dict[tuple[int, ...], DatasetContent], text: str, shape_index: int
) -> None:
    """Where h5py (via h5grove's parsing) accepts, we give the same array; else SelectionError."""
    shape = SHAPES[shape_index]
    content = datasets[shape]
    dataset = content._h5py_entity
    try:
        index = tuple(_h5grove_parse(text))
        if len(index) > dataset.ndim:
            raise ValueError("too many")
        expected = dataset[index]
    except Exception:
        expected = None
    if expected is None:
        with pytest.raises(errors.SelectionError):
            select(text, shape)
        with pytest.raises(errors.SelectionError):
            content.data(text)
        return
    sel = select(text, shape)
    assert sel.shape == np.shape(expected)
    assert np.array_equal(content.data(text), expected)
    blocks = [dataset[i] for i in plan_blocks(sel, 4, 8)]
    assert b"".join(np.asarray(b).tobytes() for b in blocks) == np.asarray(expected).tobytes()


def _h5grove_parse(text: str) -> list[object]:
    """h5grove's parsing rules, written out (strict: whitespace-only bounds are errors)."""
    members: list[object] = []
    for part in text.split(","):
        params = part.split(":")
        if len(params) == 1:
            members.append(int(part))
        elif len(params) == 2:
            members.append(slice(int(params[0]) if params[0] != "" else 0, _opt(params[1])))
        elif len(params) == 3:
            members.append(slice(_opt(params[0]), _opt(params[1]), _opt(params[2])))
        else:
            raise TypeError(part)
    return members


def _opt(text: str) -> int | None:
    return int(text) if text != "" else None


def test_selection_info_needs_no_read(tmp_path: Path) -> None:
    """A 1 TB declared dataset: shape and size are known instantly, nothing is read."""
    with h5py.File(tmp_path / "huge.h5", "w") as f:
        f.create_dataset("x", shape=(2**20, 2**18), dtype="f4", chunks=(256, 256))
    with h5py.File(tmp_path / "huge.h5", "r") as f:
        content = create_content(f, "/x")
        assert isinstance(content, DatasetContent)
        info = content.selection_info()
        assert info.shape == (2**20, 2**18) and info.nbytes == 2**40
        assert content.selection_info("0:10, 5", "safe").nbytes == 40
        assert content.selection_info("0:10", flatten=True).shape == (10 * 2**18,)
        with pytest.raises(errors.SelectionError):
            content.selection_info("0:1:0")
