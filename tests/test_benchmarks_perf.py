"""The performance report's arithmetic: hardware bounds and the iteration floor (issue #9)."""

from __future__ import annotations

import pytest

from benchmarks import perf


def test_bounds_and_the_iteration_floor_by_hand() -> None:
    hw = {"matmul_gflops": {"float32": 100.0, "bfloat16": 400.0}, "memory_gb_per_s": 10.0}
    b = perf.bounds(hw, n_params=1_000_000)
    tokens = perf.BATCH * (perf.PROMPT + perf.NEW)
    assert b["update_seconds_fp32"] == pytest.approx(6e6 * tokens / 100e9)  # 3 passes x 2 FLOPs
    assert b["update_seconds_bf16"] == pytest.approx(6e6 * tokens / 400e9)
    assert b["reference_seconds_bf16"] == pytest.approx(2e6 * tokens / 400e9)
    assert b["generation_seconds_fp32"] == pytest.approx(4e6 * perf.NEW / 10e9)  # 4 bytes/weight
    assert b["generation_seconds_bf16"] == pytest.approx(2e6 * perf.NEW / 10e9)
    fp32 = b["update_seconds_fp32"] + b["reference_seconds_fp32"] + b["generation_seconds_fp32"]
    assert perf.iteration_floor(b, "fp32") == pytest.approx(fp32)
    old = {k: v for k, v in b.items() if not k.endswith("bf16") or k.startswith("update")}
    assert perf.iteration_floor(old, "bf16") is None  # a report from before the bf16 bounds


def test_the_floor_sentence_compares_each_precision_with_its_target() -> None:
    b = {f"{part}_seconds_{p}": 1.0 for part in ("update", "reference", "generation")
         for p in ("fp32", "bf16")}  # fmt: skip
    (_, line) = perf._floors(b, {"seconds": 10.0})
    assert "3.00 s fp32 = 0.30× TRL's iteration (target ≤ 0.5)" in line
    assert "3.00 s bf16 = 0.30× TRL's iteration (target ≤ 0.25)" in line
    assert perf._floors(b, {"error": "no TRL venv"})[1].startswith("Floor")  # no ratio, no TRL
