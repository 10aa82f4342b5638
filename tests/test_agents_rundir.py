"""Run directories (agents.rundir, issue #13): no silent overwrite, honest resume, and the
divergence guard of the training loop."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from agents.algorithms import ALGORITHMS
from agents.checkpoint import latest_checkpoint, load_checkpoint
from agents.ppo import PPOConfig
from agents.rundir import RESUMABLE, RunSetupError, claim_run_dir, resumed_config
from agents.trainer import TrainingDiverged, run


def tiny(out: Path, **kw: Any) -> PPOConfig:
    base: dict[str, Any] = dict(
        total_iterations=2, batch_size=4, minibatch_size=2, update_epochs=1, learning_rate=1e-3,
        top_k=0, output_dir=str(out), checkpoint_every=1,
    )  # fmt: skip
    return PPOConfig(**(base | kw))


def test_a_new_run_refuses_a_directory_that_holds_a_run(tmp_path: Path) -> None:
    out = run(tiny(tmp_path / "run"), "ppo")
    before = load_checkpoint(out)[0]
    with pytest.raises(RunSetupError, match=r"already holds a run; pass --resume .* --overwrite"):
        run(tiny(tmp_path / "run", seed=1), "ppo")
    assert all(torch.equal(v, load_checkpoint(out)[0][k]) for k, v in before.items())  # intact
    run(tiny(tmp_path / "run", seed=1, total_iterations=1), "ppo", overwrite=True)
    assert sorted(p.name for p in (out / "checkpoints").glob("iter-*")) == ["iter-000001"]
    assert load_checkpoint(out)[2]["seed"] == 1  # replaced, not mixed


def test_the_default_output_directory_is_not_silently_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run(tiny(Path(""), output_dir="", total_iterations=1), "ppo")
    with pytest.raises(RunSetupError, match="runs/ppo-Reverse-v0-s0 already holds a run"):
        run(tiny(Path(""), output_dir="", total_iterations=1), "ppo")


def test_output_directory_problems(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunSetupError, match="is a file"):
        claim_run_dir(tmp_path / "file", resume=False, overwrite=False)
    with pytest.raises(RunSetupError, match="--resume: no checkpoint"):
        claim_run_dir(tmp_path / "empty", resume=True, overwrite=False)
    with pytest.raises(RunSetupError, match=r"cannot create output directory .*file/run"):
        claim_run_dir(tmp_path / "file" / "run", resume=False, overwrite=False)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"seed": 7}, "seed: 0 in the run, 7 now"),
        ({"learning_rate": 0.5}, "learning_rate: 0.001 in the run, 0.5 now"),
        ({"batch_size": 8}, "batch_size: 4 in the run, 8 now"),
        ({"env_id": "textgen_env/Positive-v0"}, "env_id: 'textgen_env/Reverse-v0' in the run"),
        ({"separate_critic": True}, "separate_critic: False in the run, True now"),
    ],
)
def test_resume_refuses_a_different_run(tmp_path: Path, change: dict, named: str) -> None:
    out = run(tiny(tmp_path), "ppo")
    config_before = (latest_checkpoint(out) / "config.json").read_text()
    with pytest.raises(RunSetupError, match="--resume would change what the run is") as err:
        run(tiny(tmp_path, total_iterations=3, **change), "ppo", resume=True)
    assert named in str(err.value)
    assert (latest_checkpoint(out) / "config.json").read_text() == config_before


def test_resume_refuses_another_algorithm(tmp_path: Path) -> None:
    from agents.aggrevated import AggreVaTeDConfig

    run(tiny(tmp_path), "ppo")
    cfg = AggreVaTeDConfig(**{**dataclasses.asdict(tiny(tmp_path)), "total_iterations": 3})
    with pytest.raises(RunSetupError, match="algo: 'ppo' in the run, 'aggrevated' now"):
        run(cfg, "aggrevated", resume=True)


def test_resume_records_allowed_changes(tmp_path: Path) -> None:
    run(tiny(tmp_path), "ppo")
    out = run(tiny(tmp_path, total_iterations=3, log_samples_every=2), "ppo", resume=True)
    config = json.loads((latest_checkpoint(out) / "config.json").read_text())
    assert config["total_iterations"] == 3 and config["seed"] == 0
    assert config["resumed"] == [
        {"at_iteration": 2, "changed": {"total_iterations": [2, 3], "log_samples_every": [10, 2]}}
    ]
    with pytest.raises(RunSetupError, match="has done 3 iterations; total_iterations 1 is below"):
        run(tiny(tmp_path, total_iterations=1), "ppo", resume=True)


def test_resumable_fields_are_real_fields() -> None:
    names = {f.name for f in dataclasses.fields(PPOConfig)}
    assert set(RESUMABLE) <= names
    saved = {"algo": "ppo", **dataclasses.asdict(PPOConfig()), "init_from": None}
    same = resumed_config(saved, dict(saved), 0, PPOConfig)
    assert same["resumed"] == []


def test_divergence_stops_before_the_checkpoint(tmp_path: Path) -> None:
    """Issue #13: with a huge learning rate the run stops, naming the iteration and the
    quantities, and writes no checkpoint of NaN tensors."""
    with pytest.raises(TrainingDiverged, match=r"at iteration 0: .*grad_norm, parameters not"):
        run(tiny(tmp_path, total_iterations=6, learning_rate=1e12), "ppo")
    assert not list((tmp_path / "checkpoints").glob("iter-*"))


def test_divergence_keeps_the_last_good_checkpoint_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def update(ac: Any, *args: Any) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 3:  # the third iteration's update breaks a parameter
            with torch.no_grad():
                ac.value_head.bias.fill_(float("nan"))
        return {}

    monkeypatch.setitem(ALGORITHMS, "ppo", dataclasses.replace(ALGORITHMS["ppo"], update=update))
    with pytest.raises(
        TrainingDiverged, match=r"at iteration 2: parameters not finite.*iter-000002"
    ):
        run(tiny(tmp_path, total_iterations=5), "ppo")
    assert latest_checkpoint(tmp_path).name == "iter-000002"
    assert torch.isfinite(load_checkpoint(tmp_path)[0]["value_head.bias"]).all()


def test_a_multi_process_launch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WORLD_SIZE without a launcher's other variables (RANK, LOCAL_RANK, ...) cannot join the
    processes into one run; it is refused rather than run as independent trainings into one
    directory (issue #12; real launches are tested in test_agents_distributed.py)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RunSetupError, match=r"one of 2 .* start a single process"):
        run(tiny(tmp_path), "ppo")
    assert not (tmp_path / "checkpoints").exists()
    monkeypatch.setenv("WORLD_SIZE", "1")
    run(tiny(tmp_path, total_iterations=1), "ppo")


def test_a_served_guide_that_moved_may_be_resumed() -> None:
    """The server's address and the client's patience are not what the run is; the model is."""
    saved = {"algo": "ppo", **dataclasses.asdict(PPOConfig()), "init_from": None}
    moved = dict(saved, guide_api_base="http://127.0.0.1:9001/v1", guide_api_timeout_s=5.0)
    out = resumed_config(saved, moved, 0, PPOConfig)
    assert out["resumed"][0]["changed"]["guide_api_base"] == ["", "http://127.0.0.1:9001/v1"]
    with pytest.raises(RunSetupError, match="guide_api_model"):
        resumed_config(saved, dict(saved, guide_api_model="other"), 0, PPOConfig)
