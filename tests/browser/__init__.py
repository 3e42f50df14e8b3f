"""Helpers of the end-to-end browser test (jupyterlab-h5web on jupyter_h5grove)."""
