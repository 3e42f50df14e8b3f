"""Compatibility: the same calls through h5grove 4.0.0 and through our core, on every entity.

Results must be identical (metadata, attributes, data, stats, encoded bytes and headers,
exception classes). Where h5grove raises a non-domain exception (a 500 in its servers) we
answer with a domain error or a sensible value instead: ``check`` asserts that. The few
deliberate differences on inputs h5grove *does* answer are spelled out in ``compare_encode``
(bin of object data, bin of a null dataspace, tiff of 3D+).
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5grove.content as hg_content
import h5grove.encoders as hg_encoders
import h5grove.models as hg_models
import h5grove.utils as hg_utils
import h5py
import numpy as np
import pytest
from h5fixtures import build_everything_file, dataset_paths, entity_paths

from jupyter_h5grove import content as our_content
from jupyter_h5grove import encoders as our_encoders
from jupyter_h5grove import errors, utils
from jupyter_h5grove.models import LinkResolution

pytestmark = [
    # h5grove's stats of complex data cast complex to int (it is its behaviour we compare).
    pytest.mark.filterwarnings("ignore:Casting complex values to real"),
    # tifffile warns when both encoders write an empty 2D array (same bytes, still compared).
    pytest.mark.filterwarnings("ignore:.*writing zero-size array"),
]

DOMAIN = ("NotFoundError", "PathError", "LinkError", "QueryArgumentError")
ENCODINGS = ["json", "bin", "npy", "csv", "tiff", None, "nope"]
MODES = [mode.value for mode in LinkResolution]

_SAMPLE_DIR = Path(tempfile.mkdtemp(prefix="h5compat-"))
_SAMPLE = build_everything_file(_SAMPLE_DIR / "sample.h5", loops=False)
ENTITIES = entity_paths(_SAMPLE)
DATASETS = dataset_paths(_SAMPLE)


class Raised:
    """An exception captured as an outcome."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __repr__(self) -> str:
        return f"Raised({self.exc!r})"


def run(call: Callable[..., Any], *args: Any) -> Any:
    """Outcome of a call: its value or Raised(exception)."""
    try:
        return call(*args)
    except Exception as exc:
        return Raised(exc)


def same(ours: Any, theirs: Any) -> bool:
    """Deep equality, strict on types, dtypes, shapes, key order; NaN equals NaN."""
    if isinstance(theirs, np.ndarray):
        if not (
            isinstance(ours, np.ndarray)
            and ours.dtype == theirs.dtype
            and ours.shape == theirs.shape
        ):
            return False
        if theirs.dtype.hasobject:
            return same(ours.ravel().tolist(), theirs.ravel().tolist())
        if padded(theirs):
            return np.array_equal(ours, theirs, equal_nan=True)
        return ours.tobytes() == theirs.tobytes()
    if isinstance(theirs, np.generic):
        return (
            type(ours) is type(theirs)
            and np.asarray(ours).tobytes() == np.asarray(theirs).tobytes()
        )
    if isinstance(theirs, dict):
        return (
            type(ours) is dict
            and list(ours) == list(theirs)
            and all(same(ours[k], theirs[k]) for k in theirs)
        )
    if isinstance(theirs, (list, tuple)):
        return (
            type(ours) is type(theirs)
            and len(ours) == len(theirs)
            and all(same(a, b) for a, b in zip(ours, theirs, strict=True))
        )
    if isinstance(theirs, h5py.Empty):
        return isinstance(ours, h5py.Empty) and ours.dtype == theirs.dtype
    if isinstance(theirs, (h5py.Reference, h5py.RegionReference)):
        return type(ours) is type(theirs) and str(ours) == str(theirs)
    if isinstance(theirs, float) and math.isnan(theirs):
        return isinstance(ours, float) and math.isnan(ours)
    if isinstance(theirs, hg_encoders.Response):
        return (
            isinstance(ours, our_encoders.Response)
            and ours.content == theirs.content
            and ours.headers == theirs.headers
        )
    return type(ours) is type(theirs) and ours == theirs


def check(ours: Any, theirs: Any, where: str) -> None:
    """Assert identical outcomes; where h5grove crashes, assert ours is a domain outcome."""
    if isinstance(theirs, Raised):
        name = type(theirs.exc).__name__
        if name in DOMAIN:
            assert isinstance(ours, Raised), f"{where}: h5grove raises {theirs}, we return {ours!r}"
            assert isinstance(ours.exc, getattr(errors, name)), f"{where}: {ours} vs {theirs}"
        elif isinstance(ours, Raised):
            # Deliberate difference: h5grove fails with a non-domain exception (HTTP 500);
            # we raise a domain error that maps to a 4xx.
            status = errors.http_status(ours.exc)
            assert status is not None and 400 <= status < 500, f"{where}: {ours} vs {theirs}"
        return
    assert not isinstance(ours, Raised), f"{where}: we raise {ours}, h5grove returns {theirs!r}"
    assert same(ours, theirs), f"{where}:\n ours   {ours!r}\n theirs {theirs!r}"


def padded(array: np.ndarray) -> bool:
    """Long doubles carry uninitialised padding bytes: compare their values, not their bytes."""
    return array.dtype.kind in "fc" and array.dtype.itemsize > (
        8 if array.dtype.kind == "f" else 16
    )


def compare_encode(ours_data: Any, theirs_data: Any, encoding: str | None, where: str) -> None:
    """encode() through both, with the deliberate differences spelled out."""
    theirs = run(lambda: hg_encoders.encode(theirs_data, encoding))
    ours = run(lambda: our_encoders.encode(ours_data, encoding))
    where = f"{where} encode({encoding})"
    array = np.asarray(theirs_data)
    if encoding in ("bin", "npy") and padded(array) and not isinstance(theirs, Raised):
        assert not isinstance(ours, Raised), where
        assert ours.headers == theirs.headers, where
        decode = (
            (lambda b: np.load(io.BytesIO(b)))
            if encoding == "npy"
            else (lambda b: np.frombuffer(b, array.dtype))
        )
        assert np.array_equal(decode(ours.content), decode(theirs.content), equal_nan=True), where
        return
    if encoding == "bin" and array.dtype.hasobject:
        # Difference: h5grove sends the array's raw memory (object pointers) for vlen/object
        # data and for h5py.Empty; we refuse object data and send an empty body for Empty.
        if isinstance(theirs_data, h5py.Empty):
            assert not isinstance(ours, Raised) and ours.content == b"", where
        else:
            assert isinstance(ours, Raised), where
            assert isinstance(ours.exc, errors.UnsupportedEncodingError), where
        return
    if encoding == "tiff" and array.ndim not in (0, 2) and hg_utils.is_numeric_data(array):
        # Difference: h5grove writes a multi-page TIFF for 3D+ (and a file for an empty 1D
        # array) although it documents 2D only; we refuse anything but 2D with a clear message.
        assert isinstance(ours, Raised), where
        assert isinstance(ours.exc, errors.UnsupportedEncodingError), where
        return
    check(ours, theirs, where)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[h5py.File, h5py.File]:
    """The no-loop everything file, opened once for h5grove and once for us."""
    folder = tmp_path_factory.mktemp("compat")
    path = build_everything_file(folder / "everything.h5", loops=False)
    with h5py.File(path, "r") as theirs, h5py.File(path, "r") as ours:
        yield ours, theirs


def contents(files: tuple[h5py.File, h5py.File], path: str, mode: str) -> tuple[Any, Any]:
    """create_content outcome through both."""
    ours_file, theirs_file = files
    ours = run(lambda: our_content.create_content(ours_file, path, LinkResolution(mode)))
    theirs = run(
        lambda: hg_content.create_content(theirs_file, path, hg_models.LinkResolution(mode))
    )
    return ours, theirs


@pytest.mark.parametrize("path", ENTITIES)
@pytest.mark.parametrize("mode", MODES)
def test_entity(files: tuple[h5py.File, h5py.File], path: str, mode: str) -> None:
    """Kind, name, path, metadata (several depths), attributes and their encodings."""
    ours, theirs = contents(files, path, mode)
    where = f"{path} [{mode}]"
    if isinstance(theirs, Raised) or isinstance(ours, Raised):
        check(ours, theirs, where)
        return
    assert type(ours).__name__ == type(theirs).__name__, where
    assert (ours.kind, ours.name, ours.path) == (theirs.kind, theirs.name, theirs.path)
    for attr in ("target_path", "target_file"):
        assert getattr(ours, attr, None) == getattr(theirs, attr, None), where
    depths = [None, 0, 1, 2, 5] if theirs.kind == "group" else [None]
    for depth in depths:
        args = () if depth is None else (depth,)
        ours_meta = run(ours.metadata, *args)
        theirs_meta = run(theirs.metadata, *args)
        check(ours_meta, theirs_meta, f"{where} metadata{args}")
        if not isinstance(theirs_meta, Raised):
            compare_encode(ours_meta, theirs_meta, "json", f"{where} metadata{args}")
    if not isinstance(theirs, hg_content.ResolvedEntityContent):
        # Difference: h5grove links have no attributes() (AttributeError -> 500 in its
        # servers); ours raise EntityKindError (422).
        outcome = run(ours.attributes)
        assert isinstance(outcome, Raised) and isinstance(outcome.exc, errors.EntityKindError)
        return
    keys = sorted(theirs._h5py_entity.attrs.keys())
    for attr_keys in [None, keys[:1], keys[::-1], ["nope"], [*keys[:1], "nope"]]:
        ours_attrs = run(ours.attributes, attr_keys)
        theirs_attrs = run(theirs.attributes, attr_keys)
        # Unknown keys: h5grove raises KeyError (500); we raise AttributeNotFoundError (422).
        check(ours_attrs, theirs_attrs, f"{where} attributes({attr_keys})")
        if not isinstance(theirs_attrs, Raised):
            compare_encode(ours_attrs, theirs_attrs, "json", f"{where} attributes")


def selections(shape: tuple[int, ...] | None) -> list[Any]:
    """Valid and invalid selections for a shape."""
    if not shape:
        return [None, "0", "", ":", "a"]
    ndim = len(shape)
    picks: list[Any] = [None, "0", "-1", "0:2", "1:", ":", "::2", "0:100:3", "5:2", " 1 "]
    if ndim >= 2:
        picks += ["0,1", "0:2, 1", "-1, ::2", ":, 0", "1:, -2:"]
    if ndim >= 3:
        picks += ["0, 0, 1:3", ":, :, 0"]
    bad = ["0:1:0", "a", "1.5", "", ",".join(["0"] * (ndim + 1)), str(shape[0]), "1:2:-1"]
    bad += ["1:2:3:4", f"-{shape[0] + 1}", "0:2,", "0x1", "1 2"]
    native = [0, slice(0, 2), (0,) * ndim, (slice(None, None, 2),)]
    return picks + bad + native


@pytest.mark.parametrize("path", DATASETS)
def test_dataset(files: tuple[h5py.File, h5py.File], path: str) -> None:
    """data() with every selection, flatten and dtype, stats, and every encoding."""
    ours, theirs = contents(files, path, "only_valid")
    assert ours.kind == theirs.kind == "dataset"
    for selection in selections(theirs._h5py_entity.shape):
        for flatten, dtype in [(False, "origin"), (True, "origin"), (False, "safe"), (False, None)]:
            where = f"{path} data({selection!r}, {flatten}, {dtype})"
            ours_data = run(ours.data, selection, flatten, dtype)
            theirs_data = run(theirs.data, selection, flatten, dtype)
            check(ours_data, theirs_data, where)
            if isinstance(theirs_data, Raised) or isinstance(ours_data, Raised):
                continue
            encodings = ENCODINGS if (flatten, dtype) == (False, "origin") else ["bin", "npy"]
            for encoding in encodings:
                compare_encode(ours_data, theirs_data, encoding, where)
        where = f"{path} data_stats({selection!r})"
        ours_stats = run(ours.data_stats, selection)
        theirs_stats = run(theirs.data_stats, selection)
        if ours.kind == "dataset" and ours._h5py_entity.dtype.kind == "c":
            check_modulus_stats(ours_stats, run(ours.data, selection), where)
            continue
        check(ours_stats, theirs_stats, where)
        if not isinstance(theirs_stats, Raised):
            compare_encode(ours_stats, theirs_stats, "json", where)
    for dtype in ["float64", "bad"]:
        check(
            run(ours.data, None, False, dtype),
            run(theirs.data, None, False, dtype),
            dtype,
        )


def check_modulus_stats(ours: Any, data: Any, where: str) -> None:
    """Difference: statistics of complex data are those of the finite moduli |z| (h5grove
    compares complex numbers lexicographically, truncates to int, fails on NaN)."""
    if isinstance(data, Raised):  # a bad selection: the same 422 as for data
        assert isinstance(ours, Raised) and errors.http_status(ours.exc) == 422, where
        return
    assert not isinstance(ours, Raised), f"{where}: {ours}"
    moduli = np.abs(np.asarray(data, dtype=np.clongdouble)).astype(np.float64).ravel()
    moduli = moduli[np.isfinite(moduli)]
    if not moduli.size:
        assert set(ours.values()) == {None}, where
        return
    positive = moduli[moduli > 0]
    expected = {
        "strict_positive_min": float(positive.min()) if positive.size else None,
        "positive_min": float(moduli.min()),
        "min": float(moduli.min()),
        "max": float(moduli.max()),
        "mean": float(moduli.mean()),
        "std": float(moduli.std()),
    }
    assert list(ours) == list(expected), where
    for key, value in expected.items():
        assert type(ours[key]) is type(value), (where, key, ours)
        if value is not None:
            assert ours[key] == pytest.approx(value, rel=1e-6), (where, key, ours)


def test_null_dataspace_stats_are_none(files: tuple[h5py.File, h5py.File]) -> None:
    """Difference: h5grove raises TypeError on stats of a null dataspace; ours are all None."""
    ours, theirs = contents(files, "/ranks/null", "only_valid")
    assert isinstance(run(theirs.data_stats), Raised)
    assert set(ours.data_stats().values()) == {None}


def test_non_numeric_stats_and_safe_dtype(files: tuple[h5py.File, h5py.File]) -> None:
    """Difference: h5grove's stats of strings fail in NumPy (500); ours is a 422 error."""
    ours, theirs = contents(files, "/types/str_vlen_utf8", "only_valid")
    assert not isinstance(run(theirs.data_stats).exc, hg_utils.QueryArgumentError)
    with pytest.raises(errors.NonNumericDataError):
        ours.data_stats()
    with pytest.raises(errors.QueryArgumentError):
        ours.data(dtype="safe")


def test_soft_link_loops_do_not_break_the_parent(tmp_path: Path) -> None:
    """Difference: h5grove's metadata of a group holding a soft-link loop raises RuntimeError."""
    path = build_everything_file(tmp_path / "loops.h5", loops=True)
    with h5py.File(path, "r") as f:
        with pytest.raises(RuntimeError):
            hg_content.create_content(f, "/links").metadata()
        children = our_content.create_content(f, "/links").metadata()["children"]
        loops = {c["name"]: c for c in children if c["name"].startswith("soft_loop")}
        assert loops["soft_loop_a"] == {
            "kind": "soft_link",
            "name": "soft_loop_a",
            "target_path": "/links/soft_loop_b",
        }
        assert our_content.create_content(f, "/").metadata(3)["name"] == ""
        with pytest.raises(errors.LinkError):
            our_content.create_content(f, "/links/soft_self", LinkResolution.ALL)
        with pytest.raises(errors.PathError):
            our_content.create_content(f, "/links/soft_self/x")


def test_everything_with_loops_matches_elsewhere(tmp_path: Path) -> None:
    """Entities outside the loops' group behave identically in the file with loops."""
    path = build_everything_file(tmp_path / "loops.h5", loops=True)
    with h5py.File(path, "r") as theirs_file, h5py.File(path, "r") as ours_file:
        for path_ in ["/ranks", "/types", "/attributes", "/links/soft_to_dataset"]:
            theirs = hg_content.create_content(theirs_file, path_)
            ours = our_content.create_content(ours_file, path_)
            check(ours.metadata(), theirs.metadata(), path_)


@pytest.mark.parametrize(
    "text",
    [
        "5",
        "1, 2:5",
        "0:10:5, 2, 3:",
        "-1",
        ":",
        "::",
        "1:",
        ":3",
        "::2",
        " 2 : 4 ",
        "-3:-1",
        "0,0,0,0",
    ],
)
def test_parse_slice(text: str) -> None:
    """parse_slice gives h5grove's tuples for valid strings."""
    assert utils.parse_slice(text) == hg_utils.parse_slice(text)


def test_query_helpers() -> None:
    """parse_bool_arg, parse_link_resolution_arg, hdf_path_join, sorted_dict as h5grove."""
    for value in [None, "false", "FALSE", "true", "0", ""]:
        assert utils.parse_bool_arg(value, True) == hg_utils.parse_bool_arg(value, True)
    for value in [None, "all", "ALL", "none", "only_valid", "true", "false"]:
        fallback = hg_models.LinkResolution.ONLY_VALID
        ours = utils.parse_link_resolution_arg(value, LinkResolution.ONLY_VALID)
        assert ours.value == hg_utils.parse_link_resolution_arg(value, fallback).value
    with pytest.raises(errors.QueryArgumentError):
        utils.parse_link_resolution_arg("maybe", LinkResolution.ONLY_VALID)
    for prefix in [None, "/", "/a", "/a/", "a"]:
        assert utils.hdf_path_join(prefix, "b") == hg_utils.hdf_path_join(prefix, "b")
    assert list(utils.sorted_dict(("b", 1), ("a", 2))) == ["a", "b"]


@pytest.mark.parametrize(
    "value",
    [
        {"a": np.float16(1.5), "b": np.longdouble(2.5), "c": np.complex64(1 - 1j)},
        [h5py.Empty("f4"), b"bytes", np.arange(3), np.array([1 + 1j])],
        np.array([np.nan, np.inf]),
        np.array(["a", "b"], dtype=object),
    ],
)
def test_orjson_encode(value: Any) -> None:
    """orjson_encode/orjson_default give h5grove's bytes."""
    assert our_encoders.orjson_encode(value) == hg_encoders.orjson_encode(value)


def test_public_names() -> None:
    """Every public name of the reference exists."""
    for name in [
        "create_content",
        "ExternalLinkContent",
        "SoftLinkContent",
        "DatasetContent",
        "GroupContent",
        "DatatypeContent",
    ]:
        assert hasattr(our_content, name)
    for name in [
        "encode",
        "Response",
        "orjson_default",
        "orjson_encode",
        "bin_encode",
        "csv_encode",
        "npy_encode",
        "tiff_encode",
    ]:
        assert hasattr(our_encoders, name)
    for name in DOMAIN:
        assert getattr(utils, name) is getattr(errors, name)


def test_big_endian_json(files: tuple[h5py.File, h5py.File]) -> None:
    """Difference: orjson refuses big-endian arrays, so h5grove answers 500; we serve them."""
    ours, theirs = contents(files, "/types/endian_be_i2", "only_valid")
    with pytest.raises(TypeError):
        hg_encoders.encode(theirs.data(), "json")
    assert (
        our_encoders.encode(ours.data(), "json").content
        == b"[" + b",".join(str(i).encode() for i in range(12)) + b"]"
    )
    assert our_encoders.encode(ours.data(), "bin").content == np.arange(12, dtype=">i2").tobytes()
