"""Serve HDF5 files to web viewers from a Jupyter server, with the h5grove API."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``from jupyter_h5grove import H5Web`` (imported on first use: the server never needs
    it)."""
    if name == "H5Web":
        from .notebook import H5Web

        return H5Web
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """Tell jupyter_server which ExtensionApp to load."""
    from .app import H5GroveApp

    return [{"module": "jupyter_h5grove", "app": H5GroveApp}]
