"""Tests for benchmarks/op_profile.py: the operator profile of one training iteration."""

from __future__ import annotations

from benchmarks.op_profile import TOP, iteration_profile, matmul_share, profile_markdown

# The CLI's default toy task and tiny random LM, with a small batch (as tests/test_agents_cli.py).
TINY_PPO = ["--algo", "ppo", "--batch-size", "4", "--top-k", "0", "--minibatch-size", "2",
            "--update-epochs", "1"]  # fmt: skip


def test_a_tiny_run_is_profiled_phase_by_phase() -> None:
    prof = iteration_profile(TINY_PPO)
    assert set(prof) == {"generation", "update"}, prof
    for phase in prof.values():
        ops = phase["ops"]
        assert 0 < len(ops) <= TOP
        seconds = [o["seconds"] for o in ops]
        assert seconds == sorted(seconds, reverse=True) and seconds[0] > 0
        assert phase["self_seconds"] >= sum(seconds)
        assert all(o["calls"] >= 1 for o in ops)
    # only the update phase runs a backward (counted over all operators: which ones make the
    # top list depends on the machine's speed, so the test does not look for them there)
    assert prof["generation"]["backward_calls"] == 0
    assert prof["update"]["backward_calls"] > 0


def test_a_failing_run_reports_its_error() -> None:
    prof = iteration_profile(["--algo", "no-such-algo"])
    assert set(prof) == {"error"}
    assert prof["error"].startswith("exit 2:") and "no-such-algo" in prof["error"]


def test_markdown_lists_both_phases_and_errors() -> None:
    phase = {"self_seconds": 2.5, "ops": [{"op": "aten::mm", "seconds": 1.25, "calls": 10}]}
    lines = profile_markdown(
        {"ppo fp32": {"generation": phase, "update": phase}, "ppo bf16": {"error": "exit 1: x"}}
    )
    text = "\n".join(lines)
    assert "| generation (all operators) | | 2.50 | |" in lines
    assert "| update | `aten::mm` | 1.25 | 10 |" in lines
    assert "**ppo bf16**\n\nnot profiled: exit 1: x" in text


def test_matmul_share_sums_the_matrix_products_and_names_the_next_operator() -> None:
    phase = {
        "self_seconds": 4.0,
        "ops": [
            {"op": "aten::mm", "seconds": 2.0, "calls": 5},
            {"op": "aten::copy_", "seconds": 0.75, "calls": 9},
            {"op": "mkldnn::_linear_pointwise", "seconds": 0.5, "calls": 3},
        ],
    }
    assert matmul_share(phase) == "matrix products 2.50 of 4.00 s, next `aten::copy_` 0.75 s"
    only = {"self_seconds": 1.0, "ops": [{"op": "aten::bmm", "seconds": 1.0, "calls": 1}]}
    assert matmul_share(only) == "matrix products 1.00 of 1.00 s"
