"""Serve HDF5 files to web viewers from a Jupyter server, with the h5grove API."""

from __future__ import annotations

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """Tell jupyter_server which ExtensionApp to load."""
    from .app import H5GroveApp

    return [{"module": "jupyter_h5grove", "app": H5GroveApp}]
