"""``make demo`` (agents.demo): its plot, its argument checks, and the whole pipeline with a
one-iteration budget on SmolLM2 and two test prompts."""

from __future__ import annotations

import json

import pytest

from agents import demo


def test_plot_writes_a_png(tmp_path):
    rows = {"zero-shot": (0.2, 0.05, 11.0), "ppo_pp": (0.4, 0.05, 11.5), "guide": (0.45, 0.04, 9.0)}
    path = tmp_path / "demo.png"
    demo.plot(path, [(0, 0.1), (1, 0.3), (2, 0.35)], rows, episodes=16)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _evaluation(rewards, perplexity=10.0):
    """An evaluation result as agents.evaluate returns it, one sample per reward."""
    samples = [{"prompt": f"p{i}", "reward": r} for i, r in enumerate(rewards)]
    return {"samples": samples, "metrics": {"perplexity": perplexity}}


def test_summary_averages_each_prompt_over_seeds_before_the_standard_error():
    # prompts' means over the two seeds: 0.2, 0.6, 0.4 -> mean 0.4, stdev 0.2, SE 0.2/√3;
    # the perplexity is the first evaluation's
    results = [_evaluation([0.0, 0.6, 0.4], 11.0), _evaluation([0.4, 0.6, 0.4], 13.0)]
    assert demo.per_prompt(results) == pytest.approx([0.2, 0.6, 0.4])
    assert demo.summary(results) == pytest.approx((0.4, 0.2 / 3**0.5, 11.0))


def test_scored_draws_seeds_in_order_and_measures_perplexity_on_the_first():
    calls = []

    def evaluate_one(**kw):
        calls.append(kw)
        return kw

    demo.scored(evaluate_one, 3, split="test", num_samples=5)
    assert [(c["seed"], c["perplexity"]) for c in calls] == [(0, True), (1, False), (2, False)]
    assert all(c["split"] == "test" and c["num_samples"] == 5 for c in calls)


def test_paired_gain_takes_the_difference_prompt_by_prompt():
    # a hard and an easy prompt, both +0.1 after: the prompts' spread leaves the gain's SE
    before = [_evaluation([0.0, 0.8])]
    after = [_evaluation([0.1, 0.9])]
    gain, se = demo.paired_gain(before, after)
    assert gain == pytest.approx(0.1) and se == pytest.approx(0.0, abs=1e-12)
    # diffs +0.3 and -0.1: mean 0.1, stdev 0.2√2, SE 0.2
    gain, se = demo.paired_gain(before, [_evaluation([0.3, 0.7])])
    assert gain == pytest.approx(0.1) and se == pytest.approx(0.2)


def test_evaluations_of_different_prompt_counts_are_refused():
    with pytest.raises(ValueError, match="same number of prompts"):
        demo.per_prompt([_evaluation([0.1, 0.2]), _evaluation([0.1])])


@pytest.mark.parametrize("flag", ["--iterations", "--eval-prompts", "--eval-samples"])
def test_counts_below_one_are_refused(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        demo.main([flag, "0"])
    assert exc.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_one_iteration_end_to_end(tmp_path, capsys):
    demo.main(["--iterations", "1", "--eval-prompts", "2", "--eval-samples", "2",
               "--output-dir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert "[4/4]" in out and "before ▸ after" in out and "paired by prompt" in out
    record = json.loads((tmp_path / "demo.json").read_text())
    assert set(record["rows"]) == {"zero-shot", "PPO++", "guide"}
    assert record["eval"]["seeds"] == [0, 1]
    assert all(row["perplexity"] > 1 for row in record["rows"].values())  # seed 0's samples
    rewards = record["rewards"]  # (K, P) per row, and the rows' means are theirs
    assert {name: (len(r), len(r[0])) for name, r in rewards.items()} == dict.fromkeys(
        record["rows"], (2, 2)
    )
    for name, row in record["rows"].items():
        mean = sum(map(sum, rewards[name])) / 4
        assert row["task_reward"] == pytest.approx(mean)
    gain = sum(map(sum, rewards["PPO++"])) / 4 - sum(map(sum, rewards["zero-shot"])) / 4
    assert record["gain"]["task_reward"] == pytest.approx(gain)
    assert [step for step, _ in record["curve"]] == [0]
    # the same prompts before and after, in the test split's order
    before, after = record["samples"]["before"], record["samples"]["after"]
    assert [s["prompt"] for s in before] == [s["prompt"] for s in after] and len(before) == 2
    assert (tmp_path / "demo.png").exists()
    assert (tmp_path / "zero-shot").is_dir() and (tmp_path / "ppo_pp").is_dir()


def test_a_chosen_folder_holding_runs_is_not_replaced(tmp_path, capsys):
    (tmp_path / "zero-shot").mkdir()
    with pytest.raises(SystemExit) as exc:
        demo.main(["--output-dir", str(tmp_path)])
    assert exc.value.code == 2
    assert "--overwrite replaces them" in capsys.readouterr().err
    assert (tmp_path / "zero-shot").is_dir()
