"""The performance report's arithmetic: hardware bounds and the iteration floor (issue #9)."""

from __future__ import annotations

import pytest

from benchmarks import perf


def test_bounds_and_the_iteration_floor_by_hand() -> None:
    hw = {"matmul_gflops": {"float32": 100.0, "bfloat16": 400.0}, "memory_gb_per_s": 10.0}
    params = {"body": 1_000_000, "head": 500_000, "total": 1_600_000}
    b = perf.bounds(hw, params)
    # 16 rows x 112 positions through the body, logits at the 48 generated columns
    forward = 2 * 16 * (1_000_000 * 112 + 500_000 * 48)
    assert b["update_seconds_fp32"] == pytest.approx(3 * forward / 100e9)  # forward + backward
    assert b["update_seconds_bf16"] == pytest.approx(3 * forward / 400e9)
    assert b["reference_seconds_bf16"] == pytest.approx(forward / 400e9)
    # generation: the larger of the weights' bytes per step (4 B/weight) and the FLOPs
    assert b["generation_bytes_seconds_fp32"] == pytest.approx(4 * 1.6e6 * 48 / 10e9)
    assert b["generation_flops_seconds_fp32"] == pytest.approx(forward / 100e9)
    assert b["generation_seconds_fp32"] == pytest.approx(
        max(4 * 1.6e6 * 48 / 10e9, forward / 100e9)
    )
    assert b["generation_seconds_bf16"] == pytest.approx(
        max(2 * 1.6e6 * 48 / 10e9, forward / 400e9)
    )
    fp32 = b["update_seconds_fp32"] + b["reference_seconds_fp32"] + b["generation_seconds_fp32"]
    assert perf.iteration_floor(b, "fp32") == pytest.approx(fp32)
    old = {k: v for k, v in b.items() if not k.endswith("bf16") or k.startswith("update")}
    assert perf.iteration_floor(old, "bf16") is None  # a report from before the bf16 bounds
    # a restart at L = 8 from prompts of at most 40 tokens: 16 rows x 48 positions, logits at
    # the last
    assert perf.restart_bound(hw, params, 40, 8) == pytest.approx(
        2 * 16 * (1_000_000 * 48 + 500_000) / 100e9
    )


def test_bounds_at_the_width_the_passes_compute() -> None:
    hw = {"matmul_gflops": {"float32": 100.0, "bfloat16": 400.0}, "memory_gb_per_s": 10.0}
    params = {"body": 1_000_000, "head": 500_000, "total": 1_600_000}
    b = perf.bounds(hw, params, 90.5)  # 90.5 columns on average, logits still at 48
    forward = 2 * 16 * (1_000_000 * 90.5 + 500_000 * 48)
    assert b["reference_seconds_fp32"] == pytest.approx(forward / 100e9)
    assert b["update_seconds_fp32"] == pytest.approx(3 * forward / 100e9)


def test_update_width_is_the_longest_prompt_of_each_batch_plus_the_generation() -> None:
    import gymnasium as gym

    envs = gym.make_vec("textgen_env/IMDB-v0", num_envs=16, vectorization_mode="vector_entry_point")
    longest = []
    for seed in range(3):
        obs, _ = envs.reset(seed=seed)
        longest.append(obs["attention_mask"][:, : perf.PROMPT].sum(1).max())  # left-padded
    width = perf.update_width(draws=3)
    assert width == pytest.approx(perf.NEW + sum(longest) / 3)
    assert perf.NEW < width < perf.PROMPT + perf.NEW  # IMDB-v0's prompts: shorter than 64


def test_matmul_params_count_the_lm_head_apart_and_tied_weights_once() -> None:
    from textgen_env.models import tiny_causal_lm

    model = tiny_causal_lm(50, hidden_size=8, num_layers=1, num_heads=2)
    got = perf.matmul_params(model)
    head = model.get_output_embeddings().weight
    tied = head is model.get_input_embeddings().weight
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    assert got["head"] == 50 * 8
    assert got["total"] == sum(p.numel() for p in model.parameters())
    embeddings = 50 * 8 * (1 if tied else 2)
    assert got["body"] == sum(p.numel() for p in matrices) - embeddings


def test_the_floor_sentence_compares_each_precision_with_its_target() -> None:
    b = {f"{part}_seconds_{p}": 1.0 for part in ("update", "reference", "generation")
         for p in ("fp32", "bf16")}  # fmt: skip
    (_, line) = perf._floors(b, {"seconds": 10.0})
    assert "3.00 s fp32 = 0.30× TRL's iteration (target ≤ 0.5)" in line
    assert "3.00 s bf16 = 0.30× TRL's iteration (target ≤ 0.25)" in line
    assert perf._floors(b, {"error": "no TRL venv"})[1].startswith("Floor")  # no ratio, no TRL
