"""The CPU model name the benchmark records carry: :func:`cpu_model`.

Float rounding, and with it which tokens a seeded run samples, differs between CPU models, so
every record that states a time or replays a run names the CPU it ran on.
"""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["cpu_model"]


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first ``model name`` of ``cpuinfo`` (Linux), else what :mod:`platform` says, else
    the machine type (e.g. ``x86_64``)."""
    lines = cpuinfo.read_text(encoding="utf-8").splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()
