"""Unit tests of the core: selections, errors table, encoders, type info, content errors."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pytest
from h5fixtures import build_everything_file

from jupyter_h5grove import errors, utils
from jupyter_h5grove.content import DatasetContent, create_content
from jupyter_h5grove.encoders import encode, estimated_size, npy_encode, orjson_encode
from jupyter_h5grove.selection import parse_slice, select


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", (5,)),
        ("1, 2:5", (1, slice(2, 5))),
        ("0:10:5, 2, 3:", (slice(0, 10, 5), 2, slice(3, None))),
        ("-1", (-1,)),
        (":", (slice(0, None),)),
        ("::2", (slice(None, None, 2),)),
    ],
)
def test_parse_slice(text: str, expected: tuple[object, ...]) -> None:
    """The documented examples parse as in h5grove."""
    assert parse_slice(text) == expected


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ("0:1:0", "step"),
        ("::-1", "step"),
        ("0,0,0", "too many"),
        ("7", "out of range"),
        ("-8", "out of range"),
        ("1.5", "not an integer"),
        ("abc", "not an integer"),
        ("", "not an integer"),
        ("1:2:3:4", "not a valid slice"),
        ((0.5,), "not an int"),
        ((slice("a", None),), "non-integer"),
        ((True,), "not an int"),
        ((Ellipsis,), "not an int"),
    ],
)
def test_bad_selections(selection: object, message: str) -> None:
    """Every malformed selection is a SelectionError (422) with a helpful message."""
    with pytest.raises(errors.SelectionError, match=message):
        select(selection, (7, 3))  # type: ignore[arg-type]


def test_select_shapes() -> None:
    """Shapes of answers, including empty and negative selections."""
    assert select(None, (7, 3)).shape == (7, 3)
    assert select("1", (7, 3)).shape == (3,)
    assert select("-2:, ::2", (7, 3)).shape == (2, 2)
    assert select("5:2", (7, 3)).shape == (0, 3)
    assert select("0:100:3, 1", (7, 3)).shape == (3,)
    assert select(None, ()).shape == ()
    assert select((np.int64(1), slice(None)), (7, 3)).shape == (3,)


def test_http_status_table() -> None:
    """One table; subclasses inherit their base's status."""
    assert errors.http_status(errors.PathError("x")) == 404
    assert errors.http_status(errors.LinkError("x")) == 404
    assert errors.http_status(errors.SelectionError("x")) == 422
    assert errors.http_status(errors.EntityKindError("x")) == 422
    assert errors.http_status(errors.ForbiddenError("x")) == 403
    assert errors.http_status(errors.TooLargeError("x")) == 413
    assert errors.http_status(errors.FilterUnavailableError("x")) == 422
    assert errors.http_status(errors.InvalidFileError("x")) == 422
    assert errors.http_status(ValueError("x")) is None
    assert all(isinstance(code, int) for code in errors.HTTP_STATUS.values())
    assert utils.QueryArgumentError is errors.QueryArgumentError


@pytest.fixture
def everything(tmp_path: Path) -> h5py.File:
    """The everything file, open."""
    f = h5py.File(build_everything_file(tmp_path / "e.h5"), "r")
    yield f
    f.close()


def test_wrong_kind_errors(everything: h5py.File) -> None:
    """data/stats of a group or link and unknown attributes are 422 errors."""
    group = create_content(everything, "/ranks")
    with pytest.raises(errors.EntityKindError):
        group.data()
    with pytest.raises(errors.EntityKindError):
        group.data_stats()
    link = create_content(everything, "/links/soft_broken")
    with pytest.raises(errors.EntityKindError):
        link.data()
    with pytest.raises(errors.AttributeNotFoundError, match="nope"):
        create_content(everything, "/attributes").attributes(["int", "nope"])
    with pytest.raises(errors.QueryArgumentError):
        create_content(everything, "/ranks/rank1").data(dtype="float")


@pytest.mark.parametrize(
    ("path", "encoding", "error"),
    [
        ("/types/str_vlen_utf8", "bin", errors.UnsupportedEncodingError),
        ("/types/vlen_int", "bin", errors.UnsupportedEncodingError),
        ("/types/compound_vlen", "bin", errors.UnsupportedEncodingError),
        ("/ranks/rank3", "csv", errors.UnsupportedEncodingError),
        ("/ranks/rank1", "tiff", errors.UnsupportedEncodingError),
        ("/ranks/rank3", "tiff", errors.UnsupportedEncodingError),
        ("/ranks/rank0", "csv", errors.QueryArgumentError),
        ("/types/str_fixed_ascii", "npy", errors.QueryArgumentError),
        ("/ranks/rank1", "xml", errors.QueryArgumentError),
    ],
)
def test_unsupported_encodings(
    everything: h5py.File, path: str, encoding: str, error: type
) -> None:
    """Formats that cannot represent the data are refused with a 422 error."""
    with pytest.raises(error):
        encode(create_content(everything, path).data(), encoding)


def test_bin_of_null_and_bad_utf8_json(everything: h5py.File) -> None:
    """bin of a null dataspace is empty; JSON of non-UTF-8 bytes does not fail."""
    assert encode(create_content(everything, "/ranks/null").data(), "bin").content == b""
    body = encode(create_content(everything, "/types/str_vlen_bad_utf8").data()).content
    assert body.startswith(b'["ok",')


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=">i4").reshape(3, 4),
        np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        np.arange(12.0).reshape(3, 4)[:, ::2],
        np.float16(1.5),
        np.zeros((0, 2)),
        np.zeros((1,) * 30, "u1"),
        np.array([1 + 2j], "c8"),
    ],
)
def test_npy_encode_equals_numpy_save(array: np.ndarray) -> None:
    """npy_encode writes np.save's exact bytes (header then buffer)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    assert npy_encode(np.asarray(array)) == buffer.getvalue()


def test_json_of_everything(everything: h5py.File) -> None:
    """Every attribute and dataset of the everything file encodes to JSON."""
    for path in ["/attributes", "/ranks/rank2"]:
        content = create_content(everything, path)
        assert orjson_encode(content.attributes()).startswith(b"{")
    for name in everything["types"]:
        content = create_content(everything, f"/types/{name}")
        if isinstance(content, DatasetContent):
            encode(content.data())


def test_filter_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk needing an unregistered filter raises an error naming it and hdf5plugin."""
    from jupyter_h5grove import dataset as dataset_module

    with h5py.File(tmp_path / "nf.h5", "w") as f:
        ds = f.create_dataset(
            "x", (16,), "i4", chunks=(4,), compression=32123, allow_unknown_filter=True
        )
        for start in range(0, 16, 4):
            chunk = np.arange(start, start + 4, dtype="i4").tobytes()
            ds.id.write_direct_chunk((start,), chunk, filter_mask=0)
    with h5py.File(tmp_path / "nf.h5", "r") as f:
        content = create_content(f, "/x")
        assert isinstance(content, DatasetContent)
        assert content.metadata()["filters"][0]["id"] == 32123
        calls = (content.data, content.data_stats, lambda: list(content.iter_blocks()))
        for block_bytes in (1 << 20, 16):  # one block, then chunk by chunk
            monkeypatch.setattr(dataset_module, "STATS_BLOCK_BYTES", block_bytes)
            for call in calls:
                with pytest.raises(errors.FilterUnavailableError, match=r"32123.*hdf5plugin"):
                    call()


def test_hdf5plugin_filters_read(everything: h5py.File) -> None:
    """Every compressed dataset reads back the same values."""
    expected = everything["filters/gzip"][()]
    for name in everything["filters"]:
        if name != "scaleoffset_int":
            data = create_content(everything, f"/filters/{name}").data()
            assert np.array_equal(data, expected, equal_nan=True), name


def test_estimated_size() -> None:
    """Binary formats cost their bytes; text formats a bound per item."""
    assert estimated_size(800, 100, "bin") < 2000
    assert estimated_size(800, 100, "json") >= 2600


@pytest.mark.parametrize("key", ["", "a\x00b", "/", ".", "a/b", "é" * 300])
def test_odd_attribute_keys(everything: h5py.File, key: str) -> None:
    """attr_keys HDF5 rejects are simply unknown attributes (422), not HDF5 errors."""
    with pytest.raises(errors.AttributeNotFoundError):
        create_content(everything, "/attributes").attributes([key])


def test_names_that_are_not_utf8(tmp_path: Path) -> None:
    """Difference: h5grove's group metadata fails on a non-UTF-8 child name; ours shows it."""
    with h5py.File(tmp_path / "n.h5", "w") as f:
        f["ok"] = 1
        f.id.links.create_soft(b"bad\xffname", b"/ok")
        f.create_group(b"grp\xff").attrs.create(b"attr\xff", 1)
    with h5py.File(tmp_path / "n.h5", "r") as f:
        meta = create_content(f, "/").metadata(2)
        names = sorted(child["name"] for child in meta["children"])
        assert names == ["bad\ufffdname", "grp\ufffd", "ok"]
        group = next(c for c in meta["children"] if c["kind"] == "group")
        assert group["attributes"][0]["name"] == "attr\ufffd"
        assert encode(meta).content.startswith(b"{")
        assert encode(create_content(f, "/").metadata(2)).headers["Content-Type"]
