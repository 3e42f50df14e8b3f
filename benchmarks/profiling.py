"""Optional: sample our server with py-spy during a workload and summarise the hot spots."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


class PySpy:
    """`py-spy record` attached to a pid; collapsed stacks written to `out` on stop."""

    def __init__(
        self,
        pid: int,
        out: Path,
        native: bool = False,
        rate: int = 250,
        subprocesses: bool = False,
        nonblocking: bool = True,
    ):
        # next to this interpreter (a venv's bin/ need not be on PATH), else on PATH
        exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        args = [
            exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(out),
            "--threads",
        ]
        if subprocesses:  # its children too (our worker processes), "process PID" frames first
            args.append("--subprocesses")
        # --native needs to pause the process while it unwinds C stacks
        if native:
            args.append("--native")
        elif nonblocking:  # else py-spy pauses the process at each sample: whole stacks
            args.append("--nonblocking")
        self.out = out
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


IDLE = ("_queue_SimpleQueue_get", "select_epoll_poll", "EpollSelector.select", "epoll_wait")
"""Frames of threads waiting for work (worker queue, event-loop poll): not CPU time."""


def _frame_name(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    return f"{name} ({'/'.join(file.split('/')[-2:])})" if file else name


def summarise(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function, from py-spy's collapsed output."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    if not raw.exists():
        return "no samples (py-spy wrote nothing: permissions?)"
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        # skip the thread / process header py-spy puts first
        frames = [f for f in frames if not f.startswith(("thread", "process"))]
        if not frames or any(f.startswith(IDLE) for f in frames):
            continue
        total += count
        self_counts[frames[-1]] += count
        for f in set(frames):
            incl_counts[f] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples (busy threads only)", "", "self %  function"]
    lines += [f"{100 * c / total:6.1f}  {f}" for f, c in self_counts.most_common(top)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * c / total:6.1f}  {f}" for f, c in incl_counts.most_common(top * 2)]
    return "\n".join(lines)
