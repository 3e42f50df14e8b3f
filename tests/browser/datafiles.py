"""Build the HDF5 files the browser test opens in H5Web."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin
import nbformat
import numpy as np

NEXUS_FILE = "scan.nxs"
SPACED_FOLDER = "run 2 data"
SPACED_FILE = "stack copy.h5"
TYPES_FILE = "types.h5"
NOTEBOOK = "viewer.ipynb"
REMOTE_NOTEBOOK = "remote.ipynb"
REMOTE_BUCKET = "browser-bucket"
REMOTE_PREFIX = f"s3://{REMOTE_BUCKET}/data/"
REMOTE_URL = f"{REMOTE_PREFIX}scan.nxs"

LINE_LENGTH = 200
IMAGE_SHAPE = (48, 64)
STACK_SHAPE = (6, 40, 50)


def image_values(shape: tuple[int, int], phase: float = 0.0) -> np.ndarray:
    """A smooth 2D pattern with a wide value range, so a heatmap is visibly not uniform."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.sin(x / 5.0 + phase) * np.cos(y / 7.0) * 100.0 + x + y


def stack_values(shape: tuple[int, int, int]) -> np.ndarray:
    """A uint16 image stack whose slices differ, so moving the slider changes the picture."""
    frames = [image_values(shape[1:], phase=i) * (i + 1) for i in range(shape[0])]
    data = np.stack(frames)
    return (data - data.min()).astype(np.uint16)


def _write_nexus(path: Path) -> None:
    """A NeXus file (default plot: a 2D signal with two axes) with plain 1D, 2D, 3D datasets."""
    with h5py.File(path, "w") as h5:
        h5.attrs["NX_class"] = "NXroot"
        h5.attrs["default"] = "entry"
        entry = h5.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "intensity"
        data.attrs["axes"] = np.array(["y", "x"], dtype=h5py.string_dtype())
        data["intensity"] = image_values(IMAGE_SHAPE)
        data["intensity"].attrs["units"] = "counts"
        data["y"] = np.linspace(-1.0, 1.0, IMAGE_SHAPE[0])
        data["x"] = np.linspace(0.0, 10.0, IMAGE_SHAPE[1])
        data["x"].attrs["units"] = "mm"
        entry["title"] = "browser test scan"
        # Plain datasets next to the NeXus tree: 1D (line), 2D (heatmap), compressed 3D stack.
        h5["line"] = np.sin(np.linspace(0, 6 * np.pi, LINE_LENGTH)) * np.linspace(1, 5, LINE_LENGTH)
        h5["image"] = image_values(IMAGE_SHAPE)
        h5.create_dataset(
            "stack",
            data=stack_values(STACK_SHAPE),
            chunks=(1, *STACK_SHAPE[1:]),
            **hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE),
        )


def _write_spaced(path: Path) -> None:
    """A file in a folder whose name has a space: a Bitshuffle/LZ4-compressed stack."""
    with h5py.File(path, "w") as h5:
        h5.create_dataset(
            "stack",
            data=stack_values(STACK_SHAPE),
            chunks=(1, *STACK_SHAPE[1:]),
            **hdf5plugin.Bitshuffle(cname="lz4"),
        )


def _write_types(path: Path) -> None:
    """Datasets H5Web fetches as JSON or with other binary dtypes than the plots above."""
    t = np.linspace(0, 6, 50)
    with h5py.File(path, "w") as h5:
        h5["title"] = "hello world"  # scalar string: JSON
        h5["strings"] = np.array(["alpha", "beta", "gamma"], dtype=h5py.string_dtype())
        h5["compound"] = np.array(
            [(1.5, 2), (2.5, 3), (3.5, 5)], dtype=[("x", "<f8"), ("n", "<i4")]
        )
        h5["complex"] = (1 + t) * np.exp(1j * t)  # JSON pairs; H5Web plots the amplitude
        h5["flags"] = np.array([True, False, True, True, False])
        h5["half"] = np.linspace(0, 1, 20).astype(np.float16)  # fetched with dtype=safe
        h5["big"] = np.arange(10, dtype=np.uint64) * 2**40  # 64-bit integers
        h5["int8_image"] = (np.arange(48 * 64).reshape(48, 64) % 200 - 100).astype(np.int8)
        h5["big_endian_image"] = image_values(IMAGE_SHAPE).astype(">f4")
        h5["scalar"] = 42.5


def _write_notebook(path: Path, code: str) -> None:
    """A notebook whose first cell is `code`."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.cells.append(nbformat.v4.new_code_cell(code))
    nbformat.write(notebook, path)


def upload_nexus(client, bucket: str, key: str, folder: Path) -> None:
    """Write the NeXus file and put it in an S3 bucket (boto3 `client`)."""
    _write_nexus(folder / NEXUS_FILE)
    client.create_bucket(Bucket=bucket)
    client.upload_file(str(folder / NEXUS_FILE), bucket, key)


def build_tree(root: Path) -> None:
    """Write every file of the browser test under `root`."""
    _write_nexus(root / NEXUS_FILE)
    _write_types(root / TYPES_FILE)
    # jupyterlab_h5web's H5Web display object, and ours on a file in S3.
    _write_notebook(root / NOTEBOOK, f"from jupyterlab_h5web import H5Web\n\nH5Web({NEXUS_FILE!r})")
    _write_notebook(
        root / REMOTE_NOTEBOOK, f"from jupyter_h5grove import H5Web\n\nH5Web({REMOTE_URL!r})"
    )
    (root / SPACED_FOLDER).mkdir()
    _write_spaced(root / SPACED_FOLDER / SPACED_FILE)
