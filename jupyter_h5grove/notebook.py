"""``H5Web(file)``: show an HDF5 file in a notebook with jupyterlab-h5web's viewer.

jupyterlab-h5web renders outputs of type ``application/x-hdf5`` (the file's path, or here a
URL) with H5Web, fetching from the Jupyter server at ``{base_url}h5web``: serve that prefix
with this extension (``H5GroveApp.url_prefix = "h5web"``) for remote files to show. Only the
output is made here; the server checks the file when H5Web asks for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .remote import is_url

MIMETYPE = "application/x-hdf5"
"""The output type jupyterlab-h5web renders."""


class H5Web:
    """A notebook output opening `file` in H5Web: a URL under one of the server's remote
    prefixes, or a local path (relative to the notebook's folder, the kernel's working
    directory, which must lie in the server's root)."""

    def __init__(self, file: str | Path, **metadata: Any) -> None:
        text = str(file)
        if is_url(text):
            self.file = text
        else:
            path = Path(file).absolute()
            if not path.is_file():
                raise FileNotFoundError(f"{path} is not a file")
            self.file = str(path)
        self.metadata = metadata

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """What IPython displays: the file for jupyterlab-h5web's renderer."""
        return {MIMETYPE: self.file}, self.metadata

    def __repr__(self) -> str:
        return f"H5Web({self.file!r})"
