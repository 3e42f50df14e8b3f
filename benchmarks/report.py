"""Machine description and the results table."""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata

import psutil
from servers import REPO


@dataclass
class Row:
    """One printed line of the results table."""

    workload: str
    ours: str
    base: str
    ratio: str = ""
    spread: str = ""
    target: str = ""
    met: str = ""
    same: str = ""
    h5web: str = ""  # jupyterlab-h5web's median, where it answers
    vs_h5web: str = ""  # median(ours) / median(h5web)
    key: str = ""  # the row's name in a --today file (not printed)
    today: str = ""  # the figure the issue gives for today (--today)


HEADER = Row(
    "workload",
    "ours",
    "h5grove",
    "ratio",
    "spread (IQR)",
    "target",
    "met?",
    "same?",
    "h5web",
    "ours/h5web",
    today="today",
)

COLUMNS = ("workload", "ours", "base", "ratio", "spread", "target", "today", "met", "same")
H5WEB_COLUMNS = ("h5web", "vs_h5web")


def ms(seconds: float) -> str:
    """Format a duration in milliseconds with 3 significant digits."""
    v = seconds * 1e3
    if v >= 1000:
        return f"{seconds:.2f} s"
    return f"{v:.3g} ms" if v < 100 else f"{v:.0f} ms"


def table(rows: list[Row], h5web: bool = True, today: bool = False, base: str = "") -> str:
    """A GitHub-flavoured markdown table, aligned for the terminal (without the h5web
    columns if not `h5web`; with the "today" column if `today`; `base`: another title for
    the h5grove column)."""
    columns = [c for c in COLUMNS if today or c != "today"]
    columns += list(H5WEB_COLUMNS) if h5web else []
    header = dataclasses.replace(HEADER, base=base) if base else HEADER
    cells = [[getattr(r, c) for c in columns] for r in [header, *rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_rev() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "-"
    except OSError:
        return "-"


def machine_info() -> dict[str, str]:
    """What the figures depend on: CPU, memory, OS and library versions."""
    import h5py

    return {
        "cpu": f"{_cpu_model()}, {os.cpu_count()} logical CPUs",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": ", ".join(
            f"{name} {_version(name)}"
            for name in (
                "numpy",
                "h5py",
                "hdf5plugin",
                "orjson",
                "tornado",
                "jupyter_server",
                "h5grove",
                "jupyterlab_h5web",
            )
        )
        + f", HDF5 {h5py.version.hdf5_version}",
        "jupyter_h5grove": f"checkout {_git_rev()} ({REPO})",
    }


class OtherLoad:
    """CPU time used by other processes while the benchmark runs (a shared machine skews it)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.system0 = self._system_busy()
        self.own0 = self._own()

    @staticmethod
    def _system_busy() -> float:
        t = psutil.cpu_times()  # guest time is already inside user time on Linux
        fields = ("user", "nice", "system", "irq", "softirq")
        return float(sum(getattr(t, f, 0.0) for f in fields))

    @staticmethod
    def _own() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped servers and workers
        return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime

    def summary(self) -> str:
        """Share of the machine used by other processes, and the load average."""
        wall = time.monotonic() - self.t0
        others = (self._system_busy() - self.system0) - (self._own() - self.own0)
        share = max(0.0, others) / (wall * (os.cpu_count() or 1))
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        return f"{100 * share:.0f}% of the CPUs used by other processes; load average {load}"
