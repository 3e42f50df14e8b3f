"""Builders of rich, real HDF5 files for the tests (importable by every test module).

``build_everything_file(path)`` writes one file holding every HDF5 type, ranks 0 to 4, null
and zero-size dataspaces, NaN/inf, filters (built-in and hdf5plugin), links of every kind,
attributes of every type, odd names and a committed datatype; ``entity_paths(path)`` lists its
entities. ``build_containment_tree(root, outside)`` writes external links, virtual datasets and
external raw storage pointing inside and outside a root folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

EXT_TARGET_NAME = "everything_target.h5"
"""Sibling file that the everything file's external links point to."""

EXT_RAW_NAME = "everything_raw.bin"
"""Raw file holding the external-storage dataset's bytes (referenced by absolute path)."""

ODD_NAMES = ["with space", "per%cent", "amp&and", "hash#tag", "ünïcødé", "日本語", "q?m=1"]

INT_DTYPES = ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"]
FLOAT_DTYPES = ["f2", "f4", "f8", np.longdouble]
ENDIAN_DTYPES = [">i2", ">u4", ">i8", ">f4", ">f8", "<f4"]


def _float_data(shape: tuple[int, ...], dtype: object = "f8") -> np.ndarray:
    """Deterministic values in [-50, 50) with a NaN, +inf and -inf when there is room."""
    size = int(np.prod(shape))
    data = (np.linspace(-50, 49.5, size) if size else np.zeros(0)).astype(dtype)
    if size >= 4:
        data[1], data[2], data[3] = np.nan, np.inf, -np.inf
    return data.reshape(shape)


def _write_types(group: h5py.Group) -> None:
    """One dataset per HDF5 type class (and NumPy flavour)."""
    for dtype in INT_DTYPES:
        info = np.iinfo(dtype)
        group[f"int_{dtype}"] = np.array(
            [info.min, -1 if info.min else 0, 0, 1, 7, info.max], dtype
        )
    for dtype in FLOAT_DTYPES:
        name = np.dtype(dtype).name
        group[f"float_{name}"] = _float_data((3, 4), dtype)
    for dtype in ENDIAN_DTYPES:
        group[f"endian_{dtype.replace('>', 'be_').replace('<', 'le_')}"] = np.arange(
            12, dtype=dtype
        )
    group["bool"] = np.array([True, False, True])
    group["complex64"] = np.array([1 + 2j, -3.5 - 1j, 0j], np.complex64)
    group["complex128"] = np.array([[1 + 2j, np.nan + 1j], [-3 - 4j, 2j]], np.complex128)
    group["complex_ld"] = np.array([1 + 1j, -2 + 0.5j], np.clongdouble)
    _native_complex(group)
    group["str_fixed_ascii"] = np.array([b"abc", b"de", b""], dtype="S3")
    group["str_fixed_scalar"] = np.bytes_(b"hello")
    fixed_utf8 = group.create_dataset("str_fixed_utf8", (2,), dtype=h5py.string_dtype("utf-8", 2))
    fixed_utf8.id.write(
        h5py.h5s.ALL,
        h5py.h5s.ALL,
        np.array(["é".encode(), b"ab"], "S2"),
        mtype=fixed_utf8.id.get_type(),
    )
    group.create_dataset(
        "str_vlen_ascii", data=[b"a", b"bcd", b""], dtype=h5py.string_dtype("ascii")
    )
    group.create_dataset(
        "str_vlen_utf8", data=["\u03b1", "\u03b2\u03b3", "naïve ✓"], dtype=h5py.string_dtype()
    )
    group["str_vlen_scalar"] = "scalar ✓"
    group.create_dataset(
        "str_vlen_bad_utf8", data=[b"ok", b"\xff\xfe"], dtype=h5py.string_dtype("ascii")
    )
    tid = h5py.h5t.STD_B8LE.copy()
    bitfield = h5py.h5d.create(group.id, b"bitfield", tid, h5py.h5s.create_simple((4,)))
    bitfield.write(
        h5py.h5s.ALL, h5py.h5s.ALL, np.arange(4, dtype="u1"), mtype=h5py.h5t.NATIVE_UINT8
    )
    group["opaque"] = np.array([b"\x00\x01\x02\x03", b"abcd"], dtype="V4")
    point = np.dtype([("x", "<f4"), ("y", ">i2")])
    group["compound"] = np.array([(1.5, 2), (-1, 3)], point)
    nested = np.dtype([("id", "u2"), ("pos", point), ("name", "S4"), ("v", "f8", (2,))])
    group["compound_nested"] = np.array([(1, (0.5, -2), b"ab", [1, 2])], nested)
    group.create_dataset(
        "compound_vlen", data=np.array([(1, "x")], dtype=[("a", "i4"), ("s", h5py.string_dtype())])
    )
    colour = h5py.enum_dtype({"RED": 0, "GREEN": 1, "BLUE": 42}, basetype="i1")
    group.create_dataset("enum", data=np.array([0, 42, 1], "i1"), dtype=colour)
    ragged = group.create_dataset("vlen_int", (2,), dtype=h5py.vlen_dtype("i4"))
    ragged[0], ragged[1] = [1, 2, 3], [4]
    group.create_dataset("array_type", data=np.zeros((3,), dtype=("f4", (2, 3))))
    target = group["int_i4"]
    group["reference"] = np.array([target.ref, h5py.Reference()], dtype=h5py.ref_dtype)
    group.create_dataset(
        "region_reference", data=np.array([target.regionref[1:3]]), dtype=h5py.regionref_dtype
    )


def _native_complex(group: h5py.Group) -> None:
    """A dataset of HDF5 2.0's native complex class (skipped by older HDF5)."""
    if not hasattr(h5py.h5t, "COMPLEX_IEEE_F64LE"):  # pragma: no cover - older HDF5
        return
    space = h5py.h5s.create_simple((2,))
    dset = h5py.h5d.create(group.id, b"complex_native", h5py.h5t.COMPLEX_IEEE_F64LE, space)
    dset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array([1 + 2j, -1j]))


def _write_ranks(group: h5py.Group) -> None:
    """Ranks 0 to 4, null and zero-size dataspaces, NaN/inf, chunked multi-block data."""
    group["rank0"] = np.float64(3.25)
    group["rank0_int"] = np.int32(-7)
    group["rank1"] = _float_data((20,))
    group["rank2"] = _float_data((6, 7), "f4")
    group["rank3"] = np.arange(2 * 3 * 4, dtype="i2").reshape(2, 3, 4)
    group["rank4"] = _float_data((2, 3, 2, 5))
    group["rank2_int"] = np.arange(-10, 20, dtype="i4").reshape(5, 6)
    group["all_nan"] = np.full((3,), np.nan)
    group["all_negative"] = np.array([-3, -1, -2], "i4")
    group.create_dataset("null", data=h5py.Empty("f4"))
    group.create_dataset("null_str", data=h5py.Empty(h5py.string_dtype()))
    group.create_dataset("zero_size", shape=(0, 3), dtype="f8")
    group.create_dataset("zero_size_1d", shape=(0,), dtype="i4")
    group.create_dataset(
        "chunked", data=_float_data((61, 33), "f4"), chunks=(7, 10), compression="gzip"
    )
    group.create_dataset("fill_only", shape=(4, 4), dtype="i2", fillvalue=5)


def _write_filters(group: h5py.Group) -> None:
    """The same 2D float32 data under every filter we can write."""
    data = _float_data((40, 50), "f4")
    ints = np.arange(2000, dtype="i4").reshape(40, 50)
    options: dict[str, dict[str, object]] = {
        "gzip": {"compression": "gzip", "compression_opts": 4},
        "lzf": {"compression": "lzf"},
        "shuffle_gzip": {"compression": "gzip", "shuffle": True},
        "fletcher32": {"fletcher32": True},
        "blosc_lz4": dict(hdf5plugin.Blosc(cname="lz4", clevel=5)),
        "blosc_zstd": dict(hdf5plugin.Blosc(cname="zstd", shuffle=hdf5plugin.Blosc.BITSHUFFLE)),
        "blosc2": dict(hdf5plugin.Blosc2(cname="lz4")),
        "bitshuffle_lz4": dict(hdf5plugin.Bitshuffle(cname="lz4")),
        "lz4": dict(hdf5plugin.LZ4()),
        "zstd": dict(hdf5plugin.Zstd()),
    }
    for name, kwargs in options.items():
        group.create_dataset(name, data=data, chunks=(10, 25), **kwargs)  # type: ignore[arg-type]
    group.create_dataset("scaleoffset_int", data=ints, chunks=(10, 25), scaleoffset=0)


def _write_attributes(node: h5py.HLObject) -> None:
    """Attributes of every type on one node."""
    attrs = node.attrs
    attrs["int"] = np.int32(-3)
    attrs["uint64"] = np.uint64(2**64 - 1)
    attrs["float"] = 1.5
    attrs["float16"] = np.float16(0.5)
    attrs["longdouble"] = np.longdouble(2.5)
    attrs["nan"] = np.nan
    attrs["inf_array"] = np.array([np.inf, -np.inf, 1.0])
    attrs["bool"] = np.bool_(True)
    attrs["complex"] = np.complex128(1 - 2j)
    attrs["big_endian"] = np.array([1, 2, 3], ">i4")
    attrs["str_vlen"] = "unicode ✓"
    attrs["str_bytes"] = np.bytes_(b"fixed")
    attrs["str_array"] = np.array(["a", "bc"], dtype=h5py.string_dtype())
    attrs["int_array_2d"] = np.arange(6).reshape(2, 3)
    attrs["empty"] = h5py.Empty("f4")
    attrs["compound"] = np.array((1, 2.5), dtype=[("a", "i4"), ("b", "f8")])
    attrs.create("enum", 1, dtype=h5py.enum_dtype({"OFF": 0, "ON": 1}, basetype="u1"))
    attrs["with space & %"] = "odd name"


def _write_links(f: h5py.File, loops: bool) -> None:
    """Soft, external, broken and (if ``loops``) looping links."""
    links = f.create_group("links")
    links["soft_to_dataset"] = h5py.SoftLink("/ranks/rank2")
    links["soft_to_group"] = h5py.SoftLink("/ranks")
    links["soft_relative"] = h5py.SoftLink("soft_to_dataset")
    links["soft_broken"] = h5py.SoftLink("/does/not/exist")
    if loops:
        links["soft_loop_a"] = h5py.SoftLink("/links/soft_loop_b")
        links["soft_loop_b"] = h5py.SoftLink("/links/soft_loop_a")
        links["soft_self"] = h5py.SoftLink("/links/soft_self")
    links["external_dataset"] = h5py.ExternalLink(EXT_TARGET_NAME, "/data")
    links["external_group"] = h5py.ExternalLink(EXT_TARGET_NAME, "/group")
    links["external_missing_file"] = h5py.ExternalLink("no_such_file.h5", "/data")
    links["external_missing_path"] = h5py.ExternalLink(EXT_TARGET_NAME, "/nope")
    links["hard_alias"] = f["ranks/rank1"]


def _write_storage(group: h5py.Group, folder: Path) -> None:
    """Virtual datasets (sources in the sibling file and in the same file), external storage."""
    layout = h5py.VirtualLayout(shape=(2, 10), dtype="f8")
    layout[0] = h5py.VirtualSource(EXT_TARGET_NAME, "data", shape=(10,))
    layout[1, :5] = h5py.VirtualSource(".", "/ranks/rank1", shape=(20,))[:5]
    group.create_virtual_dataset("vds", layout, fillvalue=-1)
    missing = h5py.VirtualLayout(shape=(4,), dtype="i4")
    missing[:] = h5py.VirtualSource("no_such_source.h5", "data", shape=(4,))
    group.create_virtual_dataset("vds_missing_source", missing, fillvalue=7)
    raw = folder / EXT_RAW_NAME
    raw.write_bytes(b"\x00" * 8 + np.arange(6, dtype="<i2").tobytes())
    group.create_dataset("external_raw", (2, 3), "<i2", external=[(str(raw), 8, 12)])


def build_external_target(path: str | os.PathLike[str]) -> None:
    """The file the everything file's external links point to."""
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(10, dtype="f8")
        group = f.create_group("group")
        group["inner"] = np.arange(4, dtype="u1").reshape(2, 2)
        group.attrs["origin"] = "external"


def build_everything_file(path: str | os.PathLike[str], loops: bool = True) -> Path:
    """Write the everything file (and its external-link target next to it); return its path.

    ``loops=False`` leaves out the soft-link loops, on which h5grove's group metadata fails.
    """
    path = Path(path)
    build_external_target(path.parent / EXT_TARGET_NAME)
    with h5py.File(path, "w") as f:
        _write_attributes(f)
        _write_types(f.create_group("types"))
        _write_ranks(f.create_group("ranks"))
        _write_filters(f.create_group("filters"))
        _write_links(f, loops)
        odd = f.create_group("odd names")
        for name in ODD_NAMES:
            odd[name] = np.arange(3)
        odd.create_group("grp #1 & co").attrs["é"] = 1
        f["types/committed"] = np.dtype([("a", "i4"), ("b", "f4")])
        f.create_dataset("typed_by_committed", data=np.zeros(2, f["types/committed"].dtype))
        f["types/committed_float"] = np.dtype(">f8")
        _write_attributes(f["ranks/rank2"])
        _write_attributes(f.create_group("attributes"))
        _write_storage(f.create_group("storage"), path.parent)
        f["attributes"].attrs["reference"] = f["ranks/rank1"].ref
        deep = f.create_group("deep/a/b/c")
        deep["leaf"] = 1
    return path


def entity_paths(path: str | os.PathLike[str]) -> list[str]:
    """Every path (groups, datasets, datatypes, links) in a file, root first, sorted."""
    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.id.links.visit(lambda name: names.append("/" + name.decode("utf-8")))
    return ["/", *sorted(set(names))]


def dataset_paths(path: str | os.PathLike[str]) -> list[str]:
    """Paths of the hard-linked datasets of a file (sorted)."""
    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: names.append("/" + name) if isinstance(obj, h5py.Dataset) else None
        )
    return sorted(names)


def build_containment_tree(root: str | os.PathLike[str], outside: str | os.PathLike[str]) -> Path:
    """Files under ``root`` linking to data inside and outside it (``outside`` is elsewhere).

    Returns ``root/master.h5``, holding: ``ext_inside`` / ``ext_outside`` / ``ext_outside_abs``
    external links, ``vds_inside`` / ``vds_outside`` virtual datasets, ``raw_inside`` /
    ``raw_outside`` external-storage datasets, ``via_soft`` (soft link to ``ext_outside``).
    """
    root, outside = Path(root), Path(outside)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    for folder in (root / "sub", outside):
        with h5py.File(folder / "source.h5", "w") as f:
            f["data"] = np.arange(6, dtype="f8") + (0 if folder == outside else 100)
            f.create_group("group")["inner"] = np.arange(3)
        (folder / "raw.bin").write_bytes(np.arange(4, dtype="<i4").tobytes())
    rel_outside = os.path.relpath(outside / "source.h5", root)
    with h5py.File(root / "master.h5", "w") as f:
        f["ext_inside"] = h5py.ExternalLink("sub/source.h5", "/data")
        f["ext_inside_group"] = h5py.ExternalLink("sub/source.h5", "/group")
        f["ext_outside"] = h5py.ExternalLink(rel_outside, "/data")
        f["ext_outside_group"] = h5py.ExternalLink(rel_outside, "/group")
        f["ext_outside_abs"] = h5py.ExternalLink(str(outside / "source.h5"), "/data")
        f["via_soft"] = h5py.SoftLink("/ext_outside")
        for name, source in (("vds_inside", "sub/source.h5"), ("vds_outside", rel_outside)):
            layout = h5py.VirtualLayout(shape=(6,), dtype="f8")
            layout[:] = h5py.VirtualSource(source, "data", shape=(6,))
            f.create_virtual_dataset(name, layout, fillvalue=-1)
        f.create_dataset("raw_inside", shape=(4,), dtype="<i4", external=[("sub/raw.bin", 0, 16)])
        rel_raw = os.path.relpath(outside / "raw.bin", root)
        f.create_dataset("raw_outside", shape=(4,), dtype="<i4", external=[(rel_raw, 0, 16)])
    return root / "master.h5"
