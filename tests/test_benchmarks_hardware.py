"""Tests for benchmarks/hardware.py: the CPU model a benchmark record names."""

from __future__ import annotations

import platform
from pathlib import Path

from benchmarks.hardware import cpu_model


def test_the_first_model_name_of_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t: fpu\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 9B14\n"
    )
    assert cpu_model(info) == "AMD EPYC 9B14"


def test_without_cpuinfo_platform_answers(tmp_path: Path) -> None:
    assert cpu_model(tmp_path / "missing") == (platform.processor() or platform.machine())
    (tmp_path / "arm").write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")  # no model name line
    assert cpu_model(tmp_path / "arm") == (platform.processor() or platform.machine())
