"""Bounded memory: sizes before reading, block-wise reads, streaming and block-wise stats."""

from __future__ import annotations

import itertools
from pathlib import Path

import h5py
import numpy as np
import pytest

from jupyter_h5grove import errors
from jupyter_h5grove.content import DatasetContent, create_content
from jupyter_h5grove.encoders import encode, stream_encode
from jupyter_h5grove.selection import CHUNK_STRETCH, plan_blocks, plan_chunk_blocks, select
from jupyter_h5grove.stats import blockwise_stats, finite_values, get_array_stats


@pytest.fixture
def h5(tmp_path: Path) -> h5py.File:
    """A file with chunked datasets of several ranks and types."""
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "blocks.h5", "w") as f:
        data = rng.normal(size=(37, 23, 5)).astype("f4")
        data[3, 4, 1] = np.nan
        data[10, 0, 0] = np.inf
        f.create_dataset("f3", data=data, chunks=(4, 7, 5), compression="gzip")
        f.create_dataset(
            "i2", data=np.arange(-500, 1000, dtype=">i4").reshape(50, 30), chunks=(8, 8)
        )
        f.create_dataset("u1", data=(np.arange(4000) % 256).astype("u1"))
        f.create_dataset("u8", data=np.arange(3000, dtype="u8") * (2**40) + 2**63)
        f.create_dataset("i8", data=np.arange(-1500, 1500, dtype="i8") * 12345)
        f.create_dataset("i1", data=(np.arange(3000) % 200 - 100).astype("i1"))
        f.create_dataset("pos", data=np.linspace(0.5, 9, 3000).astype(">f8"))
        f.create_dataset("neg", data=-np.linspace(0.5, 9, 3000).astype("f4"))
        f.create_dataset("bef", data=np.linspace(-3, 5, 3001).astype(">f8"))
        f.create_dataset("f16", data=np.linspace(-2, 3, 300).astype("f2").reshape(30, 10))
        f.create_dataset("c", data=(np.arange(40) - 20 + 1j * np.arange(40)).astype("c16"))
        f.create_dataset("b", data=np.arange(33) % 3 == 0)
        f.create_dataset("s", data=np.array([b"ab", b"cd"]))
        f.create_dataset("vs", data=["x", "yz"], dtype=h5py.string_dtype())
        f.create_dataset("null", data=h5py.Empty("f8"))
        f.create_dataset("scalar", data=np.float32(2.5))
        spiky = rng.normal(-3, 50, size=(61, 45)).astype("f4")
        spiky[rng.random(spiky.shape) < 0.2] = np.nan
        spiky[:, 7] = np.nan  # whole chunks of NaN
        spiky[0, 0] = 0
        f.create_dataset("spiky", data=spiky, chunks=(8, 7), compression="gzip")
        f.create_dataset("far", data=np.linspace(1e6, 1e6 + 5, 4000).astype("<f8"), chunks=(300,))
        skew = rng.random(5000).astype("f4")
        skew[::997] = 1e6  # mid-range far from the mean: moments are summed again around it
        f.create_dataset("skew", data=skew, chunks=(1000,))
        f.create_dataset("wide", data=np.linspace(-1e17, 3e17, 999).astype("f4"), chunks=(100,))
    f = h5py.File(tmp_path / "blocks.h5", "r")
    yield f
    f.close()


def dataset(f: h5py.File, name: str) -> DatasetContent:
    """DatasetContent of a path."""
    content = create_content(f, name)
    assert isinstance(content, DatasetContent)
    return content


SELECTIONS = [None, "0", "1:30:3", "-1, 2:", "5:6, 0, ::2", "3:3", ":, 22", "2:9, 1:20:4, 4"]


@pytest.mark.parametrize("block_bytes", [1, 7, 64, 100, 4096, 1 << 26])
@pytest.mark.parametrize("selection", SELECTIONS)
def test_blocks_concatenate_to_data(h5: h5py.File, selection: str | None, block_bytes: int) -> None:
    """The blocks' bytes, in order, are the bytes of data(selection)."""
    content = dataset(h5, "f3")
    whole = np.asarray(content.data(selection))
    blocks = list(content.iter_blocks(selection, "origin", block_bytes))
    assert b"".join(np.ascontiguousarray(b).tobytes() for b in blocks) == whole.tobytes()
    limit = max(CHUNK_STRETCH * block_bytes, whole.itemsize * 5)  # may stretch to whole chunks
    assert all(b.nbytes <= limit for b in blocks[:-1])
    info = content.selection_info(selection)
    assert info.shape == whole.shape and info.nbytes == whole.nbytes


def test_blocks_are_chunk_aligned() -> None:
    """With step 1, block edges fall on chunk boundaries so each chunk is read once."""
    sel = select("3:50", (50, 30))
    index = list(plan_blocks(sel, 4, 8 * 30 * 4 * 2, (8, 8)))
    starts = [i[0].start for i in index]
    assert starts[0] == 3 and all(s % 16 == 0 for s in starts[1:])
    assert index[-1][0].stop == 50


@pytest.mark.parametrize("name", ["f3", "i2", "u1", "f16", "b", "c", "s", "scalar"])
@pytest.mark.parametrize("encoding", ["bin", "npy"])
@pytest.mark.parametrize("dtype", ["origin", "safe"])
def test_stream_equals_encode(h5: h5py.File, name: str, encoding: str, dtype: str) -> None:
    """stream_encode gives encode()'s bytes and headers, for any block size."""
    content = dataset(h5, name)
    for selection, flatten in itertools.product([None, "1:"], [False, True]):
        if name == "scalar" and selection:
            continue
        try:
            expected = encode(content.data(selection, flatten, dtype), encoding)
        except errors.QueryArgumentError as error:
            with pytest.raises(type(error)):
                stream_encode(content, selection, dtype, encoding, 64, flatten=flatten)
            continue
        for block_bytes, reuse in ((16, True), (1000, False), (1000, True), (1 << 26, False)):
            streamed = stream_encode(
                content,
                selection,
                dtype,
                encoding,
                block_bytes,
                flatten=flatten,
                reuse_buffer=reuse,
            )
            body = b"".join(bytes(chunk) for chunk in streamed.chunks)
            assert body == expected.content
            assert streamed.headers == expected.headers
            assert streamed.length == len(body)


def test_stream_refuses_before_reading(h5: h5py.File) -> None:
    """Bad selection/format/dtype and object data fail when stream_encode is called."""
    with pytest.raises(errors.SelectionError):
        stream_encode(dataset(h5, "f3"), "0:1:0", "origin", "bin")
    with pytest.raises(errors.QueryArgumentError):
        stream_encode(dataset(h5, "f3"), None, "origin", "csv")
    with pytest.raises(errors.UnsupportedEncodingError):
        stream_encode(dataset(h5, "vs"), None, "origin", "bin")
    with pytest.raises(errors.QueryArgumentError):
        stream_encode(dataset(h5, "s"), None, "origin", "npy")
    with pytest.raises(errors.QueryArgumentError):
        stream_encode(dataset(h5, "f3"), None, "bogus", "bin")
    streamed = stream_encode(dataset(h5, "null"), None, "origin", "bin")
    assert streamed.length == 0 and b"".join(streamed.chunks) == b""


@pytest.mark.parametrize(
    "name", ["f3", "i2", "u1", "u8", "i8", "i1", "pos", "neg", "f16", "b", "c"]
)
@pytest.mark.parametrize("selection", [None, "1:", "0", "::3"])
def test_blockwise_stats_match_numpy(h5: h5py.File, name: str, selection: str | None) -> None:
    """Stats merged over many small blocks equal one NumPy pass within tolerance."""
    content = dataset(h5, name)
    data = np.asarray(content.data(selection))
    expected = get_array_stats(finite_values(data))
    sel = select(selection, content._h5py_entity.shape)
    for block_bytes in (8, 100, 1 << 20):
        blocks = (content._h5py_entity[i] for i in plan_blocks(sel, data.itemsize, block_bytes))
        result = blockwise_stats(blocks, data.dtype)
        assert result.keys() == expected.keys()
        for key, value in expected.items():
            assert type(result[key]) is type(value), key
            if isinstance(value, float):
                # NumPy computes float16 moments in float16; ours are in float64.
                rel = 1e-2 if data.dtype.itemsize <= 2 else 1e-5
                assert result[key] == pytest.approx(value, rel=rel, abs=1e-6), key
            elif name in ("f16",) or key not in ("mean", "std"):
                assert result[key] == value, key
            else:  # int() truncation of a float mean/std may differ by one at most
                assert abs(result[key] - value) <= 1, key


def test_sub_blocks(h5: h5py.File, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks folded in many tiny pieces give the same statistics."""
    from jupyter_h5grove import stats

    monkeypatch.setattr(stats, "SUB_BLOCK_BYTES", 24)
    for name in ["f3", "i1", "c", "b", "pos"]:
        data = np.asarray(dataset(h5, name).data())
        expected = get_array_stats(finite_values(data))
        result = blockwise_stats(np.array_split(data.reshape(-1), 7), data.dtype)
        for key, value in expected.items():
            assert result[key] == pytest.approx(value, rel=1e-5, abs=1) or key in ("mean", "std")


def test_stats_special_cases(h5: h5py.File) -> None:
    """Empty selections and null dataspaces give None; strings refuse; scalars work."""
    assert set(dataset(h5, "f3").data_stats("3:3").values()) == {None}
    assert set(dataset(h5, "null").data_stats().values()) == {None}
    assert set(dataset(h5, "s").data_stats("1:1").values()) == {None}
    with pytest.raises(errors.NonNumericDataError):
        dataset(h5, "vs").data_stats()
    assert dataset(h5, "scalar").data_stats()["mean"] == 2.5
    all_nan = blockwise_stats([np.full(3, np.nan), np.full(2, np.nan)], np.dtype("f8"))
    assert set(all_nan.values()) == {None}


def test_large_stats_are_bounded(tmp_path: Path) -> None:
    """Stats of a 64 MiB dataset read it in blocks (peak traced memory well below its size)."""
    import tracemalloc

    with h5py.File(tmp_path / "big.h5", "w") as f:
        ds = f.create_dataset("x", shape=(4096, 4096), dtype="f4", chunks=(256, 4096))
        for i in range(0, 4096, 256):
            ds[i : i + 256] = np.full((256, 4096), i, "f4")
    with h5py.File(tmp_path / "big.h5", "r") as f:
        content = dataset(f, "x")
        tracemalloc.start()
        stats = content.data_stats()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert stats["max"] == 3840.0 and stats["min"] == 0.0
    assert peak < 48 * 1024 * 1024


@pytest.mark.parametrize(
    "name", ["f3", "i2", "u8", "i8", "i1", "pos", "bef", "spiky", "far", "skew", "wide"]
)
@pytest.mark.parametrize("selection", [None, "1:", "0", "::3", "2:40, 3:"])
def test_stats_in_place_match_numpy(
    h5: h5py.File, name: str, selection: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stats read chunk by chunk into a reused buffer equal one NumPy pass within tolerance."""
    from jupyter_h5grove import dataset as dataset_module

    content = dataset(h5, name)
    try:
        data = np.asarray(content.data(selection))
    except errors.SelectionError:
        return
    expected = get_array_stats(finite_values(data))
    for block_bytes, group_bytes in ((64, 8), (1000, 1000), (4096, 64)):
        monkeypatch.setattr(dataset_module, "STATS_BLOCK_BYTES", block_bytes)
        monkeypatch.setattr(dataset_module, "STATS_GROUP_BYTES", group_bytes)
        result = content.data_stats(selection)
        assert result.keys() == expected.keys()
        for key, value in expected.items():
            assert type(result[key]) is type(value), key
            if isinstance(value, float):
                assert result[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
            elif key not in ("mean", "std"):
                assert result[key] == value, key
            else:  # int() truncation of a float mean/std may differ by one at most
                assert abs(result[key] - value) <= 1, key


@pytest.mark.parametrize("selection", [None, "3:50", "5, 1:29", "9:9", "::2"])
@pytest.mark.parametrize("block_bytes", [4, 256, 1000, 1 << 20])
def test_chunk_blocks_cover_selection_once(selection: str | None, block_bytes: int) -> None:
    """Chunk-grid blocks tile the selection exactly, each whole chunks clipped to it."""
    shape, chunks = (50, 30), (8, 7)
    sel = select(selection, shape)
    blocks = plan_chunk_blocks(sel, 4, block_bytes, chunks)
    if selection == "::2" or block_bytes == 4 or sel.size == 0:
        assert blocks is None
        return
    assert blocks is not None
    seen = np.zeros(shape, int)
    for index, block_shape in blocks:
        assert tuple(s.stop - s.start for s in index) == block_shape
        for member, chunk, dim in zip(index, chunks, sel.dims, strict=True):
            assert member.start % chunk == 0 or member.start == dim.start
            assert member.stop % chunk == 0 or member.stop == dim.start + dim.count
        seen[index] += 1
    expected = np.zeros(shape, int)
    expected[tuple(d.slice_of(0, d.count) for d in sel.dims)] = 1
    assert (seen == expected).all()
