"""The demo: sample files a viewer can show, and the Jupyter command that serves them."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import pytest

from jupyter_h5grove import demo


def test_generate_writes_viewable_files(tmp_path: Path) -> None:
    """NeXus entry with a 2D signal and axes, a 1D line, a compressed 3D uint16 stack, links,
    and a file in a sub-folder whose name has a space."""
    files = demo.generate(tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in files] == [
        "nexus.h5",
        "links.h5",
        "more data/spectra.h5",
    ]
    with h5py.File(files[0], "r") as f:
        nxdata = f["entry/image"]
        assert nxdata.attrs["NX_class"] == "NXdata"
        assert nxdata[nxdata.attrs["signal"]].ndim == 2
        assert list(nxdata.attrs["axes"]) == ["y", "x"]
        assert f["entry/line"].ndim == 1
        stack = f["entry/stack"]
        assert stack.ndim == 3 and stack.dtype == "uint16"
        assert stack.id.get_create_plist().get_nfilters() == 1
        assert stack[3].max() > 0
    with h5py.File(files[1], "r") as f:
        assert isinstance(f.get("links/soft", getlink=True), h5py.SoftLink)
        assert f["links/external"].shape == (1000,)  # resolves into nexus.h5


def test_command_serves_folder_on_loopback(tmp_path: Path, monkeypatch) -> None:
    """JupyterLab if installed, on 127.0.0.1, root = the folder; extra arguments passed on."""
    command = demo.jupyter_command(tmp_path, "127.0.0.1", ["--port=9999"])
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={tmp_path}" in command
    assert "--ip=127.0.0.1" in command
    assert command[-1] == "--port=9999"
    assert "--H5GroveApp.url_prefix=h5web" in command  # jupyterlab-h5web is a test dependency
    monkeypatch.setattr(demo, "_installed", lambda module: False)
    bare = demo.jupyter_command(tmp_path, "127.0.0.1", [])
    assert bare[2] == "jupyter_server"
    assert not any("h5web" in arg for arg in bare)


def test_generate_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--generate-only writes the files and returns without starting anything."""
    demo.main([str(tmp_path / "d"), "--generate-only"])
    assert (tmp_path / "d" / "nexus.h5").is_file()
    assert "wrote" in capsys.readouterr().out
