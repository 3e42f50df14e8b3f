"""`jupyter-h5grove-demo`: write sample HDF5 files, then start Jupyter over them."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

SUBFOLDER = "more data"
"""A sub-folder whose name has a space, as real data folders often do."""


def _peaks(ny: int, nx: int) -> np.ndarray:
    """A 2D image with a few Gaussian peaks on a gentle slope, easy to recognise in a heatmap."""
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float32)
    image = 0.002 * (x + y)
    for cy, cx, width, height in ((0.3, 0.3, 0.05, 10), (0.6, 0.7, 0.08, 6), (0.8, 0.2, 0.03, 8)):
        image += height * np.exp(
            -((x / nx - cx) ** 2 + (y / ny - cy) ** 2) / (2 * width**2), dtype=np.float32
        )
    return image.astype(np.float32)


def write_nexus(path: Path) -> None:
    """A NeXus file: NXentry/NXdata with a 2D signal and its axes, a 1D line, a 3D stack."""
    with h5py.File(path, "w") as f:
        f.attrs["NX_class"] = "NXroot"
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs.update({"NX_class": "NXentry", "default": "image"})
        entry["title"] = "jupyter_h5grove demo"

        nxdata = entry.create_group("image")
        nxdata.attrs.update({"NX_class": "NXdata", "signal": "data", "axes": ["y", "x"]})
        data = nxdata.create_dataset(
            "data", data=_peaks(256, 512), chunks=(64, 128), **hdf5plugin.Zstd()
        )
        data.attrs.update({"long_name": "Intensity", "units": "counts"})
        nxdata["x"] = np.linspace(-5.0, 5.0, 512)
        nxdata["x"].attrs["units"] = "mm"
        nxdata["y"] = np.linspace(0.0, 2.5, 256)
        nxdata["y"].attrs["units"] = "mm"

        spectrum = entry.create_group("spectrum")
        spectrum.attrs.update({"NX_class": "NXdata", "signal": "counts", "axes": "energy"})
        energy = np.linspace(1.0, 20.0, 2000)
        counts = 100 * np.exp(-((energy - 8.0) ** 2) / 0.1) + 30 * np.exp(-((energy - 12.5) ** 2))
        spectrum["counts"] = counts + 5 * np.sin(energy)
        spectrum["energy"] = energy
        spectrum["energy"].attrs["units"] = "keV"

        rng = np.random.default_rng(0)
        frames = np.stack([_peaks(256, 256) * (1 + 0.1 * k) for k in range(20)])
        stack = (frames * 1000 + rng.integers(0, 50, frames.shape)).astype(np.uint16)
        entry.create_dataset(
            "stack", data=stack, chunks=(1, 256, 256), **hdf5plugin.Bitshuffle(cname="lz4")
        )
        entry["stack"].attrs["interpretation"] = "image"
        entry["line"] = np.sin(np.linspace(0, 8 * np.pi, 1000)) * np.linspace(1, 0, 1000)


def write_links(path: Path, target: str) -> None:
    """A file whose `links` group holds hard, soft, external and broken links."""
    with h5py.File(path, "w") as f:
        group = f.create_group("links")
        f["values"] = np.arange(10, dtype=np.int32)
        group["hard"] = f["values"]
        group["soft"] = h5py.SoftLink("/values")
        group["broken_soft"] = h5py.SoftLink("/nowhere")
        group["external"] = h5py.ExternalLink(target, "/entry/line")
        group.attrs["description"] = "hard, soft, external and broken links"


def write_spectra(path: Path) -> None:
    """A small file in a sub-folder: a few 1D spectra and a scalar."""
    with h5py.File(path, "w") as f:
        x = np.linspace(0, 1, 500)
        for k in range(3):
            f[f"spectrum_{k}"] = np.exp(-((x - 0.25 * (k + 1)) ** 2) / 0.002)
        f["temperature"] = 293.15
        f["temperature"].attrs["units"] = "K"


def generate(folder: Path) -> list[Path]:
    """Write every demo file into `folder` (created if needed) and return their paths."""
    (folder / SUBFOLDER).mkdir(parents=True, exist_ok=True)
    files = [folder / "nexus.h5", folder / "links.h5", folder / SUBFOLDER / "spectra.h5"]
    write_nexus(files[0])
    write_links(files[1], "nexus.h5")
    write_spectra(files[2])
    return files


def _installed(module: str) -> bool:
    """Whether a module can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def jupyter_command(folder: Path, ip: str, extra: Sequence[str]) -> list[str]:
    """`jupyter lab` if JupyterLab is installed, else `jupyter server`, serving `folder`.

    With jupyterlab-h5web installed, its own server extension is switched off and ours serves
    its `h5web` prefix, so double-clicking an HDF5 file opens H5Web on jupyter_h5grove.
    """
    module = "jupyterlab" if _installed("jupyterlab") else "jupyter_server"
    command = [sys.executable, "-m", module, f"--ServerApp.root_dir={folder}", f"--ip={ip}"]
    if _installed("jupyterlab_h5web"):
        command += [
            "--ServerApp.jpserver_extensions",
            "jupyterlab_h5web=False",
            "--H5GroveApp.url_prefix=h5web",
        ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and CI machines often run as root
    return [*command, *extra]


def main(argv: Sequence[str] | None = None) -> None:
    """Generate the demo files, then replace this process with a Jupyter server over them."""
    parser = argparse.ArgumentParser(
        prog="jupyter-h5grove-demo",
        description="Write sample HDF5 files and start Jupyter with jupyter_h5grove over them. "
        "Arguments after the options are passed to Jupyter.",
    )
    parser.add_argument("folder", nargs="?", default="demo-data", help="where to write the files")
    parser.add_argument("--ip", default="127.0.0.1", help="interface Jupyter listens on")
    parser.add_argument("--generate-only", action="store_true", help="write the files and exit")
    args, extra = parser.parse_known_args(argv)
    folder = Path(args.folder).resolve()
    for path in generate(folder):
        print(f"wrote {path}")
    if args.generate_only:
        return
    command = jupyter_command(folder, args.ip, extra)
    print("starting:", " ".join(command), flush=True)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
