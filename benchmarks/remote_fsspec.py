"""The comparison of the remote benchmark (issue 12): a plain Python process reading the remote
file with h5py over a default fsspec file object, as a user would without our server.

    python remote_fsspec.py JSON

JSON: {"endpoint_url", "key", "secret", "path" (bucket/key), "dataset", "window" ([[r0, r1],
[c0, c1]])}. The process imports what it needs, prints ``ready`` and then waits for a line on
stdin before each step, printing one JSON line after it (so the harness can read the
proxy's counts between the steps):

1. ``s3fs.S3FileSystem(...).open(path, "rb")`` (fsspec's default cache), ``h5py.File`` of
   it, and h5grove's ``create_content(f, "/").metadata()`` encoded as h5grove's ``meta``
   endpoint does: {"seconds", "sha256"} of that answer;
2. ``f[dataset][r0:r1, c0:c1]``: {"seconds", "sha256"} of the array's bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import h5py
import s3fs
from h5grove.content import create_content
from h5grove.encoders import encode


def _wait() -> None:
    if not sys.stdin.readline():
        sys.exit(0)  # the harness is gone


def _say(**values: object) -> None:
    print(json.dumps(values), flush=True)


def main(spec: dict) -> None:
    (r0, r1), (c0, c1) = spec["window"]
    print("ready", flush=True)
    _wait()
    t0 = time.perf_counter()
    fs = s3fs.S3FileSystem(
        endpoint_url=spec["endpoint_url"],
        key=spec["key"],
        secret=spec["secret"],
        skip_instance_cache=True,
    )
    fileobj = fs.open(spec["path"], "rb")
    h5file = h5py.File(fileobj, "r")
    meta = encode(create_content(h5file, "/").metadata()).content
    seconds = time.perf_counter() - t0
    _say(seconds=seconds, sha256=hashlib.sha256(meta).hexdigest())
    _wait()
    t0 = time.perf_counter()
    window = h5file[spec["dataset"]][r0:r1, c0:c1]
    seconds = time.perf_counter() - t0
    _say(seconds=seconds, sha256=hashlib.sha256(window.tobytes()).hexdigest())
    _wait()
    h5file.close()
    fileobj.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
