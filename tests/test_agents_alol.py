"""A-LoL and its baselines (agents.alol): the losses by hand, the advantage filter, priority
sampling, smoke runs of every variant on a toy task, resume, bad data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from agents import alol
from agents.alol import VARIANTS, ALoLConfig, draw_rows, train
from agents.checkpoint import load_checkpoint
from agents.losses import weighted_nll_loss
from agents.make_data import MakeDataConfig, make_data
from agents.offline_data import read_rows
from agents.rundir import RunSetupError
from tests.handmath import close, t

ENV = "textgen_env/Reverse-v0"


# ------------------------------------------------------------------------------------ losses
LP = [[math.log(0.5), math.log(0.25)], [math.log(0.8), 0.0]]  # log π_θ(y_t)
REF = [[math.log(0.25), math.log(0.25)], [math.log(0.4), 0.0]]  # log π_ref(y_t)
MASK = [[True, True], [True, False]]
W = [2.0, 1.0]
NLL = [[-math.log(0.5), -math.log(0.25)], [-math.log(0.8), 0.0]]


def _loss(ratio: str, eps: float = 0.5):
    logprobs = t(LP).requires_grad_()
    loss, stats = weighted_nll_loss(logprobs, t(REF), torch.tensor(MASK), t(W), ratio, eps)
    loss.backward()
    return loss, stats, logprobs.grad


def test_weighted_nll_without_ratio():
    loss, stats, grad = _loss("none")
    want = (2 * (NLL[0][0] + NLL[0][1]) + 1 * NLL[1][0]) / 3
    close(loss, want)
    close(stats["nll"], (NLL[0][0] + NLL[0][1] + NLL[1][0]) / 3)
    close(grad, [[-2 / 3, -2 / 3], [-1 / 3, 0.0]])  # −w·m/tokens


def test_sequence_ratio_is_clipped_and_detached():
    # Row 0: π/π_ref = 2 · 1 = 2, row 1: 2; both clip to 1 + ε = 1.5.
    loss, stats, grad = _loss("sequence")
    close(loss, 1.5 * (2 * (NLL[0][0] + NLL[0][1]) + NLL[1][0]) / 3)
    close(grad, [[-1.0, -1.0], [-0.5, 0.0]])  # ρ is a constant: −w·ρ·m/tokens
    close(stats["clipfrac"], 1.0)
    # Inside the clip range the ratio is kept: swap the roles, ρ = 0.5 on both rows.
    loss, _ = weighted_nll_loss(t(REF), t(LP), torch.tensor(MASK), t(W), "sequence", 0.6)
    close(loss, 0.5 * (2 * -2 * math.log(0.25) - math.log(0.4)) / 3)


def test_token_ratio_per_position():
    # Token ratios: row 0 → 2 (clipped 1.5) and 1; row 1 → 2 (clipped 1.5).
    loss, stats, _ = _loss("token")
    close(loss, (2 * (1.5 * NLL[0][0] + 1.0 * NLL[0][1]) + 1.5 * NLL[1][0]) / 3)
    close(stats["ratio"], (1.5 + 1.0 + 1.5) / 3)
    close(stats["clipfrac"], 2 / 3)


def test_sequence_ratio_does_not_overflow():
    logprobs = torch.zeros(1, 48)
    ref = torch.full((1, 48), -30.0)  # log ratio 1440: exp overflows, the clip does not
    loss, _ = weighted_nll_loss(logprobs, ref, torch.ones(1, 48, dtype=torch.bool),
                                torch.ones(1), "sequence", 0.9)  # fmt: skip
    assert torch.isfinite(loss)


def test_variant_table_is_the_papers():
    assert VARIANTS["alol"].ratio == "sequence" and VARIANTS["alol"].weight == "advantage"
    assert VARIANTS["alol_seq"].ratio == "token"
    assert VARIANTS["alol_ref_free"].ratio == "none"
    assert VARIANTS["alol_kl"].kl and VARIANTS["alol_kl"].ratio == "none"
    assert VARIANTS["wbc"].weight == "reward" and VARIANTS["wbc"].ratio == "none"
    assert VARIANTS["rlol"].weight == "reward" and VARIANTS["rlol"].ratio == "sequence"
    assert VARIANTS["nll"].weight == "one"


# ------------------------------------------------------------------------- sampling rows
def test_priority_sampling_draws_in_proportion_and_weights_by_the_mean():
    weights = torch.tensor([1.0, 3.0, 6.0])
    rng = np.random.default_rng(0)
    counts = np.zeros(3)
    for _ in range(2000):
        rows, w = draw_rows(weights, 5, rng, priority=True)
        counts += np.bincount(rows.numpy(), minlength=3)
        assert torch.equal(w, torch.full((5,), 10 / 3))
    np.testing.assert_allclose(counts / counts.sum(), [0.1, 0.3, 0.6], atol=0.01)


def test_uniform_sampling_draws_distinct_rows_with_their_weights():
    weights = torch.tensor([1.0, 3.0, 6.0])
    rows, w = draw_rows(weights, 8, np.random.default_rng(0), priority=False)
    assert sorted(rows.tolist()) == [0, 1, 2]  # b = min(size, K), no repeats
    assert torch.equal(w, weights[rows])


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("alol") / "rev.jsonl"
    make_data(MakeDataConfig(env_id=ENV, out=str(path), max_prompts=24, batch_size=8),
              progress=False)  # fmt: skip
    return path


def _cfg(tmp_path, data_file, **kw):
    base = dict(env_id=ENV, data=str(data_file), batch_size=8, total_iterations=3,
                learning_rate=1e-3, value_steps=20, value_samples=1, checkpoint_every=2,
                output_dir=str(tmp_path / "run"))  # fmt: skip
    return ALoLConfig(**(base | kw))


@pytest.mark.parametrize("algo", sorted(VARIANTS))
def test_every_variant_trains(tmp_path, data_file, algo):
    cfg = _cfg(tmp_path, data_file, total_iterations=0)
    before = load_checkpoint(train(cfg, algo), trainer=False)[0]
    cfg = _cfg(tmp_path, data_file, output_dir=str(tmp_path / "trained"))
    out = train(cfg, algo)
    after, state, config = load_checkpoint(out)
    assert config["algo"] == algo and state["iterations_done"] == 3
    changed = [k for k in after if "value_head" not in k and not torch.equal(after[k], before[k])]
    assert changed, "no policy weight changed"
    assert all(torch.isfinite(v).all() for v in after.values())


def test_advantages_filter_rows_at_or_below_the_value(tmp_path, data_file, monkeypatch):
    class Half(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 1), 0.5)

    monkeypatch.setattr(alol, "fit_value", lambda *a, **k: Half())
    out = train(_cfg(tmp_path, data_file, total_iterations=1), "alol")
    weights = load_checkpoint(out)[1]["weights"]
    rewards = torch.tensor([r.reward for r in read_rows(data_file, _task())])
    torch.testing.assert_close(weights, rewards - 0.5)  # A = R − V_ref(x)

    # No row above the value: refused before training, with the count.
    class High(Half):
        def forward(self, x):
            return torch.full((x.shape[0], 1), 2.0)

    monkeypatch.setattr(alol, "fit_value", lambda *a, **k: High())
    with pytest.raises(RunSetupError, match=r"no row of \d+ has a positive advantage"):
        train(_cfg(tmp_path, data_file, output_dir=str(tmp_path / "none")), "alol")


def _task():
    import gymnasium as gym

    return gym.make_vec(ENV, num_envs=1, vectorization_mode="vector_entry_point").unwrapped.task


def test_fit_value_learns_a_linear_target():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=gen)
    y = x @ torch.arange(8.0) / 10
    head = alol.fit_value(x, y, steps=300, lr=1e-2)
    with torch.no_grad():
        assert nn.functional.mse_loss(head(x).squeeze(1), y) < 0.05 * y.var()


def test_resume_continues_as_one_run(tmp_path, data_file):
    whole = train(_cfg(tmp_path, data_file, total_iterations=4, output_dir=str(tmp_path / "a")),
                  "alol_seq")  # fmt: skip
    cfg = _cfg(tmp_path, data_file, total_iterations=2, output_dir=str(tmp_path / "b"))
    train(cfg, "alol_seq")
    cfg.total_iterations = 4
    resumed = train(cfg, "alol_seq", resume=True)
    a, b = load_checkpoint(whole)[0], load_checkpoint(resumed)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_data_is_refused_before_training(tmp_path, data_file):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(data_file.read_text().replace('"reward": ', '"reward": "x", "r": ', 1))
    with pytest.raises(RunSetupError, match=f"{bad} line 1: reward must be a finite number"):
        train(_cfg(tmp_path, bad), "alol")
    # the refused run left no log behind: its directory takes the fixed file, no --overwrite
    assert not (Path(_cfg(tmp_path, bad).output_dir) / "tb").exists()
    assert (train(_cfg(tmp_path, data_file), "alol") / "tb").exists()
    with pytest.raises(RunSetupError, match="no such file"):
        train(_cfg(tmp_path, tmp_path / "missing.jsonl", output_dir=str(tmp_path / "m")), "alol")
    # Rewards the env does not give: the file was made for another setting.
    other = tmp_path / "other.jsonl"
    other.write_text(data_file.read_text().replace('"reward": ', '"reward": 7.5, "r": '))
    with pytest.raises(RunSetupError, match=r"line 1: reward 7\.5 in the file, but the env gives"):
        train(_cfg(tmp_path, other, output_dir=str(tmp_path / "o")), "alol")
    negative = tmp_path / "neg.jsonl"
    negative.write_text(data_file.read_text().replace('"reward": ', '"reward": -1, "r": '))
    with pytest.raises(RunSetupError):
        train(_cfg(tmp_path, negative, output_dir=str(tmp_path / "n")), "wbc")


def test_config_checks():
    with pytest.raises(ValueError, match="clip_epsilon must be in"):
        ALoLConfig(clip_epsilon=1.0)
    with pytest.raises(ValueError, match="value_steps must be > 0"):
        ALoLConfig(value_steps=0)


def test_train_cli_and_evaluate(tmp_path, data_file, capsys):
    from agents.evaluate import evaluate
    from agents.train import main

    out = tmp_path / "cli"
    main(["--algo", "alol", "--env-id", ENV, "--data", str(data_file), "--batch-size", "8",
          "--total-iterations", "2", "--value-steps", "5", "--output-dir", str(out)])  # fmt: skip
    assert f"run directory: {out}" in capsys.readouterr().out
    result = evaluate(str(out), num_samples=8, batch_size=8)
    assert result["algo"] == "alol" and 0.0 <= result["metrics"]["task_reward"] <= 1.0
    with pytest.raises(SystemExit) as info:  # a bad file: one line, exit 2
        main(["--algo", "alol", "--env-id", ENV, "--data", str(tmp_path / "nope.jsonl"),
              "--output-dir", str(tmp_path / "x")])  # fmt: skip
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().endswith("nope.jsonl: no such file")


def test_divergence_stops_before_a_checkpoint(tmp_path, data_file):
    from agents.checkpoint import TrainingDiverged

    cfg = _cfg(tmp_path, data_file, learning_rate=1e30, total_iterations=6, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match=r"diverged at iteration \d+: .*not finite"):
        train(cfg, "nll")
    for d in (tmp_path / "run" / "checkpoints").glob("iter-*"):  # every kept one is finite
        assert all(torch.isfinite(v).all() for v in load_checkpoint(d, trainer=False)[0].values())
