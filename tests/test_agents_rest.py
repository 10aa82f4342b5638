"""ReST (agents.rest): thresholds, the Grow data on disk, Improve chaining, ReST-EM, resume
mid-Grow and mid-Improve, config checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents import offline_data, rest
from agents.checkpoint import checkpoint_dirs, load_checkpoint
from agents.rest import RestConfig, improve_thresholds, train
from agents.rundir import RunSetupError

ENV = "textgen_env/Reverse-v0"


def _cfg(tmp_path, name="run", **kw):
    base = dict(env_id=ENV, batch_size=8, minibatch_size=8, total_iterations=4, max_prompts=8,
                samples_per_prompt=2, learning_rate=1e-3, thresholds=(0.0, 50.0),
                output_dir=str(tmp_path / name))  # fmt: skip
    return RestConfig(**(base | kw))


def test_thresholds_absolute_and_percentile():
    rewards = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    assert improve_thresholds((0.0, 0.25), "absolute", rewards) == [0.0, 0.25]
    assert improve_thresholds((0.0, 50.0, 100.0), "percentile", rewards) == pytest.approx(
        [0.0, 0.2, 0.4]
    )


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"thresholds": (0.5, 0.5)}, "thresholds must increase strictly"),
        ({"thresholds": (70.0, 50.0)}, "thresholds must increase strictly"),
        ({"thresholds": ()}, "at least one value"),
        ({"thresholds": (0.0, 120.0)}, r"percentile thresholds must be in \[0, 100\]"),
        ({"thresholds": (-5.0, 10.0)}, r"percentile thresholds must be in \[0, 100\]"),
        ({"samples_per_prompt": 0}, "samples_per_prompt must be > 0"),
        ({"total_iterations": 6}, "must be a multiple of the 4 thresholds"),
    ],
)
def test_bad_schedules_fail_at_config_time(kw, message):
    with pytest.raises(ValueError, match=message):
        RestConfig(**kw)
    RestConfig(thresholds=(-5.0, 10.0), threshold_kind="absolute")  # any increasing rewards


def test_grow_writes_scored_rows_and_improve_steps_chain(tmp_path, monkeypatch):
    starts = []  # the weights each Improve step starts from
    improve = rest._improve

    def spy(policy, ac, optimizer, data, keep, cfg, seed, procs):
        starts.append({k: v.clone() for k, v in ac.policy_state().items()})
        kept.append(len(keep))
        return improve(policy, ac, optimizer, data, keep, cfg, seed, procs)

    kept: list[int] = []
    monkeypatch.setattr(rest, "_improve", spy)
    out = train(_cfg(tmp_path))
    rows = [json.loads(line) for line in (out / "grow-0.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and {r["grow_step"] for r in rows} == {0}
    assert all({"prompt", "response", "reward", "policy"} <= r.keys() for r in rows)
    assert (out / "grow-1.jsonl").exists()
    # Improve step i+1 starts where step i ended; τ rises, so fewer rows are kept.
    assert len(starts) == 4 and kept[0] == 16 and kept[1] <= 16
    states = [load_checkpoint(d, trainer=False)[0] for d in checkpoint_dirs(out)]
    final = load_checkpoint(out, trainer=False)[0]
    assert all(torch.equal(starts[3][k], states[1][k]) for k in final)  # newest first
    assert any(not torch.equal(starts[1][k], starts[0][k]) for k in final)


def test_restart_from_base_starts_every_grow_from_the_base_model(tmp_path, monkeypatch):
    starts = []
    improve = rest._improve

    def spy(policy, ac, optimizer, data, keep, cfg, seed, procs):
        starts.append({k: v.clone() for k, v in ac.model.state_dict().items()})
        return improve(policy, ac, optimizer, data, keep, cfg, seed, procs)

    monkeypatch.setattr(rest, "_improve", spy)
    train(_cfg(tmp_path, restart_from_base=True))
    first_of_grow = [starts[0], starts[2]]
    assert all(torch.equal(first_of_grow[0][k], first_of_grow[1][k]) for k in starts[0])
    assert any(not torch.equal(starts[1][k], starts[0][k]) for k in starts[0])


def _same(a, b):
    x, y = load_checkpoint(a, trainer=False)[0], load_checkpoint(b, trainer=False)[0]
    return all(torch.equal(x[k], y[k]) for k in x)


def test_resume_mid_improve_and_mid_grow_end_as_one_run(tmp_path, monkeypatch):
    whole = train(_cfg(tmp_path, "whole"))
    # Killed in the second Improve step of the first Grow.
    improve, calls = rest._improve, []

    def dies(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return improve(*args)

    monkeypatch.setattr(rest, "_improve", dies)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, "a"))
    monkeypatch.setattr(rest, "_improve", improve)
    assert _same(train(_cfg(tmp_path, "a"), resume=True), whole)
    # Killed in the middle of the second Grow (after one chunk was written).
    sample, chunks = offline_data.sample_rows, []

    def dies_growing(*args, **kwargs):
        chunks.append(1)
        if len(chunks) == 4:  # Grow 0 is 2 chunks; die in Grow 1's second
            raise KeyboardInterrupt
        return sample(*args, **kwargs)

    monkeypatch.setattr(offline_data, "sample_rows", dies_growing)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, "b"))
    assert len((tmp_path / "b" / "grow-1.jsonl").read_text().splitlines()) == 8
    monkeypatch.setattr(offline_data, "sample_rows", sample)
    resumed = train(_cfg(tmp_path, "b"), resume=True)
    assert _same(resumed, whole)
    assert (resumed / "grow-1.jsonl").read_text() == (whole / "grow-1.jsonl").read_text()


def test_include_references_needs_references(tmp_path):
    with pytest.raises(RunSetupError, match=r"--include-references: .* has no reference"):
        train(_cfg(tmp_path, env_id="textgen_env/Positive-v0", include_references=True))


def test_zero_grow_steps_write_the_initial_policy(tmp_path):
    out = train(_cfg(tmp_path, total_iterations=0))
    assert load_checkpoint(out)[1]["iterations_done"] == 0
