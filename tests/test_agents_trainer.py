"""The training loop: determinism, resume, checkpoints, init_from and TensorBoard logs."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import lols, ppo_pp
from agents.algorithms import ALGORITHMS
from agents.build import build_policy
from agents.checkpoint import (
    CheckpointError,
    DamagedCheckpointWarning,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from agents.config import TrainConfig
from agents.saved_policy import load_policy
from agents.trainer import run


def ppo_pp_config(out: Path, **kw: Any) -> ppo_pp.PPOPPConfig:
    base: dict[str, Any] = dict(
        total_iterations=2, batch_size=4, minibatch_size=2, update_epochs=1, learning_rate=1e-3,
        top_k=0, beta=0.5, kl_coef=0.05, output_dir=str(out),
    )  # fmt: skip
    return ppo_pp.PPOPPConfig(**(base | kw))


def run_ppo_pp(cfg: TrainConfig, **kw: Any) -> Path:
    return run(cfg, "ppo_pp", **kw)  # the task's guide: the ε = 0.3 scripted expert


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[0]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def tb(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalar_series(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """``tag``'s (step, value) pairs from every event file of the run, in step order. Each
    file is read alone: a resumed run's file may sort before the first one by name (same
    second, writer counter 10 < 9 as text), and one reader would then drop steps it takes
    for a restart's orphans."""
    series = []
    for events in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            series += [(e.step, e.value) for e in acc.Scalars(tag)]
    return sorted(series)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path) -> None:
    a = run_ppo_pp(ppo_pp_config(tmp_path / "a", seed=3))
    b = run_ppo_pp(ppo_pp_config(tmp_path / "b", seed=3))
    c = run_ppo_pp(ppo_pp_config(tmp_path / "c", seed=4))
    assert same_weights(weights(a), weights(b))
    assert scalar_series(a, "charts/task_reward") == scalar_series(b, "charts/task_reward")
    assert not same_weights(weights(a), weights(c))


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    """LOLS (a coin per iteration, both roll-in modes): 4 straight == 2, then resume to 4."""
    base = lols.LOLSConfig(
        total_iterations=4, checkpoint_every=2, batch_size=4, minibatch_size=2, update_epochs=2,
        learning_rate=1e-3, top_k=0, tau=0.5, ppo_pp_beta=0.5, aggrevated_beta=0.5,
        adaptive_kl_target=0.5, kl_coef=0.1, kl_horizon=8, seed=1,
    )  # fmt: skip

    def go(cfg: lols.LOLSConfig, resume: bool = False) -> Path:
        return run(cfg, "lols", resume=resume)

    straight = go(dataclasses.replace(base, output_dir=str(tmp_path / "straight")))
    parted = tmp_path / "parted"
    go(dataclasses.replace(base, total_iterations=2, output_dir=str(parted)))
    assert latest_checkpoint(parted).name == "iter-000002"
    # an interrupted save leaves a .tmp-* directory behind: resume must ignore it
    junk = parted / "checkpoints" / ".tmp-interrupted"
    junk.mkdir()
    (junk / "policy.pt").write_bytes(b"garbage")
    go(dataclasses.replace(base, output_dir=str(parted)), resume=True)
    assert latest_checkpoint(parted).name == "iter-000004"
    assert same_weights(weights(straight), weights(parted))
    for tag in ("charts/task_reward", "charts/guide_rolls_in", "charts/kl_coef", "losses/policy"):
        assert scalar_series(straight, tag) == scalar_series(parted, tag), tag
    assert [s for s, _ in scalar_series(parted, "charts/task_reward")] == [0, 1, 2, 3]
    # the adaptive KL coefficient moved and was carried over
    kl_coefs = [v for _, v in scalar_series(straight, "charts/kl_coef")]
    assert len(set(kl_coefs)) > 1
    _, state_a, _ = load_checkpoint(straight)
    _, state_b, _ = load_checkpoint(parted)
    assert state_a["kl_controller"] == state_b["kl_controller"]
    assert state_a["np_rng"] == state_b["np_rng"] and state_a["iterations_done"] == 4


# ----------------------------------------------------------------------------- checkpoints


def save(out: Path, it: int, keep: int = 2, **extra: Any) -> Path:
    return save_checkpoint(
        out, it, policy_state={"w": torch.full((2,), float(it))},
        trainer_state={"iterations_done": it, **extra}, config={"algo": "ppo", "it": it},
        keep=keep,
    )  # fmt: skip


def test_checkpoint_layout_latest_and_keep(tmp_path: Path) -> None:
    for it in (1, 2, 3, 4):
        final = save(tmp_path, it, keep=2)
        assert final == tmp_path / "checkpoints" / f"iter-{it:06d}"
        assert (tmp_path / "checkpoints" / "latest").read_text().strip() == final.name
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["iter-000003", "iter-000004", "latest"]
    policy, trainer, config = load_checkpoint(tmp_path)
    assert torch.equal(policy["w"], torch.full((2,), 4.0)) and trainer["iterations_done"] == 4
    assert config == {"algo": "ppo", "it": 4}
    # the checkpoint can be named as a run dir, the checkpoints dir or the iter dir itself
    ckpts = tmp_path / "checkpoints"
    assert latest_checkpoint(tmp_path) == latest_checkpoint(ckpts) == ckpts / "iter-000004"
    assert load_checkpoint(ckpts / "iter-000003")[1]["iterations_done"] == 3
    for it in (5, 6, 7):
        save(tmp_path, it, keep=3)
    assert sorted(p.name for p in ckpts.glob("iter-*")) == [f"iter-00000{i}" for i in (5, 6, 7)]
    save(tmp_path, 7, keep=3)  # re-saving an iteration replaces it
    assert sorted(p.name for p in ckpts.glob("iter-*")) == [f"iter-00000{i}" for i in (5, 6, 7)]


def test_checkpoints_get_the_mode_of_a_plain_write(tmp_path: Path) -> None:
    """Not tempfile's private 0700 or safetensors' 0600: what mkdir/open would give."""
    import os

    ckpt = save(tmp_path, 1)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain.txt").write_text("x")
    assert ckpt.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    want = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert {f.stat().st_mode & 0o777 for f in ckpt.iterdir()} == {want}
    assert os.access(ckpt / "policy.safetensors", os.R_OK)


def test_checkpoint_save_is_atomic(tmp_path: Path) -> None:
    save(tmp_path, 1)
    ckpts = tmp_path / "checkpoints"
    (ckpts / ".tmp-leftover").mkdir()  # an earlier crash mid-save
    (ckpts / ".tmp-leftover" / "policy.pt").write_bytes(b"half")
    assert latest_checkpoint(tmp_path).name == "iter-000001"
    with pytest.raises(Exception):  # noqa: B017  (a lambda cannot be pickled)
        save(tmp_path, 2, bad=lambda: None)
    # the failed save left nothing behind (and removed the earlier crash's leftover); the
    # previous checkpoint is intact and latest
    assert sorted(p.name for p in ckpts.iterdir()) == ["iter-000001", "latest"]
    assert load_checkpoint(tmp_path)[1]["iterations_done"] == 1
    save(tmp_path, 2)
    assert latest_checkpoint(tmp_path).name == "iter-000002"


def test_no_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage config"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_intact_one(
    tmp_path: Path, damage: str
) -> None:
    """Issue #13: the damaged file is named and the newest intact checkpoint is used."""
    save(tmp_path, 1)
    newest = save(tmp_path, 2)
    if damage == "truncate":
        broken = newest / "policy.safetensors"
        broken.write_bytes(broken.read_bytes()[:20])
    elif damage == "delete":
        broken = newest / "trainer.pt"
        broken.unlink()
    else:
        broken = newest / "config.json"
        broken.write_text("{not json")
    with pytest.warns(DamagedCheckpointWarning, match=f"using iter-000001.*{broken.name}"):
        _, trainer, config = load_checkpoint(tmp_path)
    assert trainer["iterations_done"] == 1 and config["it"] == 1
    # every checkpoint damaged: one clear error naming the files
    (tmp_path / "checkpoints" / "iter-000001" / "config.json").write_text("[]")
    with pytest.raises(CheckpointError, match=r"iter-000002.*iter-000001/config\.json"):
        load_checkpoint(tmp_path)


def test_evaluation_reads_only_the_policy(tmp_path: Path) -> None:
    """Issue #13: a missing trainer.pt does not block loading the policy for evaluation."""
    ckpt = save(tmp_path, 3)
    (ckpt / "trainer.pt").unlink()
    policy, trainer, _ = load_checkpoint(tmp_path, trainer=False)
    assert trainer is None and torch.equal(policy["w"], torch.full((2,), 3.0))


class Boom:
    """Pickling it makes unpickling call ``print`` (any callable would do: code runs)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (print, ("this ran on load",))


def test_loading_a_checkpoint_never_runs_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = save(tmp_path, 1)
    torch.save({"iterations_done": 1, "payload": Boom()}, ckpt / "trainer.pt")
    with pytest.raises(CheckpointError, match=r"trainer\.pt: not a plain-data checkpoint"):
        load_checkpoint(tmp_path)
    assert "this ran on load" not in capsys.readouterr().out


def test_first_format_checkpoints_still_load(tmp_path: Path) -> None:
    """Checkpoints written before safetensors (policy.pt) load unchanged."""
    ckpt = save(tmp_path, 1)
    (ckpt / "policy.safetensors").unlink()
    torch.save({"w": torch.arange(3.0)}, ckpt / "policy.pt")
    assert torch.equal(load_checkpoint(tmp_path)[0]["w"], torch.arange(3.0))


def test_tied_weights_are_saved(tmp_path: Path) -> None:
    """safetensors refuses tensors that share memory; tied embeddings must still save."""
    shared = torch.arange(6.0).view(2, 3)
    save_checkpoint(tmp_path, 1, policy_state={"emb": shared, "head": shared}, trainer_state={},
                    config={"algo": "ppo"})  # fmt: skip
    policy = load_checkpoint(tmp_path)[0]
    assert torch.equal(policy["emb"], shared) and torch.equal(policy["head"], shared)


KILL_SCRIPT = """
import sys, torch
from agents.checkpoint import save_checkpoint
out = sys.argv[1]
big = torch.randn(4_000_000, generator=torch.Generator().manual_seed(0))  # 16 MB: slow to save
for it in range(1, 10_000):
    save_checkpoint(out, it, policy_state={"w": big + it}, trainer_state={"iterations_done": it},
                    config={"algo": "ppo", "it": it})
    print(it, flush=True)
"""


def test_sigkill_during_saves_always_leaves_an_intact_checkpoint(tmp_path: Path) -> None:
    """Kill a process that saves in a loop at several moments: the newest checkpoint is
    always complete and loadable, and the next save clears the leftovers (bounded: ~10 s)."""
    import signal
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[1]
    big = torch.randn(4_000_000, generator=torch.Generator().manual_seed(0))
    for delay in (0.3, 0.45, 0.6, 0.8, 1.1):
        out = tmp_path / f"run-{delay}"
        child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)], cwd=repo,
                                 stdout=subprocess.PIPE, text=True)  # fmt: skip
        first = child.stdout.readline()  # one checkpoint exists before we start killing
        assert first.strip() == "1", first
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        policy, trainer, config = load_checkpoint(out)
        it = trainer["iterations_done"]
        assert config["it"] == it and torch.equal(policy["w"], big + it)  # complete, not torn
        save_checkpoint(out, it + 1, policy_state={"w": torch.zeros(1)}, trainer_state={},
                        config={"algo": "ppo"})  # fmt: skip
        assert not list((out / "checkpoints").glob(".tmp-*"))


def test_trainer_checkpoints_every_and_keeps_two(tmp_path: Path) -> None:
    out = run_ppo_pp(ppo_pp_config(tmp_path, total_iterations=3, checkpoint_every=1))
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("iter-*"))
    assert ckpts == ["iter-000002", "iter-000003"]
    assert latest_checkpoint(out).name == "iter-000003"
    assert not list((out / "checkpoints").glob(".tmp-*"))
    _, state, config = load_checkpoint(out)
    assert state["iterations_done"] == 3 and config["algo"] == "ppo_pp"
    assert {"optimizer", "kl_controller", "np_rng", "env_rng", "torch_rng", "python_rng"} <= set(
        state
    )
    # the checkpoint is evaluable: the policy rebuilds from its own config
    ac, _, cfg = load_policy(str(out))
    assert not ac.training and cfg["beta"] == 0.5
    assert same_weights(ac.state_dict(), weights(out))


def test_no_training_run_writes_an_evaluable_initial_checkpoint(tmp_path: Path) -> None:
    cfg = ppo_pp_config(tmp_path, total_iterations=0)
    out = run_ppo_pp(cfg)
    assert latest_checkpoint(out).name == "iter-000000"
    init, _, _ = build_policy(cfg)
    assert same_weights(weights(out), init.state_dict())
    ac, _, _ = load_policy(str(out))
    assert same_weights(ac.state_dict(), init.state_dict())


# ----------------------------------------------------------------------------- init_from


def no_update(*args: Any) -> dict[str, float]:
    """An update that changes nothing: the run's final weights are its initial ones."""
    return {}


def patch_update(monkeypatch: pytest.MonkeyPatch, update: Any) -> None:
    """Make PPO++ runs use ``update`` instead of PPO's."""
    spec = dataclasses.replace(ALGORITHMS["ppo_pp"], update=update)
    monkeypatch.setitem(ALGORITHMS, "ppo_pp", spec)


def test_init_from_loads_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    donor = run_ppo_pp(ppo_pp_config(tmp_path / "donor", seed=5))
    patch_update(monkeypatch, no_update)
    fresh_cfg = ppo_pp_config(tmp_path / "fresh", total_iterations=1)
    fresh = run(fresh_cfg, "ppo_pp")
    init, _, _ = build_policy(fresh_cfg)
    assert same_weights(weights(fresh), init.state_dict())  # no update: still the init
    assert not same_weights(weights(fresh), weights(donor))
    cfg = ppo_pp_config(tmp_path / "warm", total_iterations=1)
    warm = run(cfg, "ppo_pp", init_from=str(donor))
    assert same_weights(weights(warm), weights(donor))
    assert load_checkpoint(warm)[2]["init_from"] == str(donor)
    # a checkpoint directory works as well as a run directory
    ckpt = latest_checkpoint(donor)
    cfg = ppo_pp_config(tmp_path / "warm2", total_iterations=1)
    warm2 = run(cfg, "ppo_pp", init_from=str(ckpt))
    assert same_weights(weights(warm2), weights(donor))


def test_init_from_also_sets_the_kl_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    donor = run_ppo_pp(ppo_pp_config(tmp_path / "donor", seed=5))
    seen: dict[str, bool] = {}

    def spy(ac: Any, *args: Any) -> dict[str, float]:
        ref = dict(ac.reference.named_parameters())
        seen["same"] = all(torch.equal(p, ref[n]) for n, p in ac.model.named_parameters())
        return {}

    patch_update(monkeypatch, spy)
    cfg = ppo_pp_config(tmp_path / "warm", total_iterations=1)
    run(cfg, "ppo_pp", init_from=str(donor))
    assert seen["same"]


# ----------------------------------------------------------------------------- TensorBoard

CHARTS = (
    "charts/task_reward", "charts/return", "charts/kl", "charts/kl_coef",
    "charts/guided_share", "charts/mean_switch_point",
)  # fmt: skip

TIMES = ("time/generation", "time/reward", "time/update", "time/tokens_per_s")
LOSSES = ("losses/policy", "losses/value", "losses/entropy", "losses/clipfrac", "losses/approx_kl")


def test_tensorboard_scalars_and_config(tmp_path: Path) -> None:
    cfg = ppo_pp_config(tmp_path, beta=1.0, kl_coef=0.03)
    out = run_ppo_pp(cfg)
    acc = tb(out)
    tags = set(acc.Tags()["scalars"])
    assert set(CHARTS) | set(TIMES) | set(LOSSES) <= tags
    values = {t: [e.value for e in acc.Scalars(t)] for t in tags}
    steps = {t: [e.step for e in acc.Scalars(t)] for t in tags}
    # charts/, time/ and the losses every iteration (a guide roll-in that ends the episode
    # gets a shorter k, so π always writes tokens to train on)
    # (explained variance and π's own rows' reward only when defined / present)
    sometimes = ("explained_variance", "task_reward_unguided")
    assert {
        t: s for t, s in steps.items() if not any(x in t for x in sometimes) and s != [0, 1]
    } == {}
    assert all(math.isfinite(v) for vs in values.values() for v in vs)
    # β = 1: every sample guided, except where the guide's roll-in was only EOS (resampled)
    shares, resampled_rows = values["charts/guided_share"], values["charts/roll_in_resampled"]
    for share, resampled in zip(shares, resampled_rows, strict=True):
        assert 1.0 - share <= resampled / cfg.batch_size
    assert all(1.0 <= k <= 7.0 for k in values["charts/mean_switch_point"])
    assert values["charts/kl_coef"] == pytest.approx([0.03, 0.03])  # fixed controller
    assert all(0.0 <= r <= 1.0 for r in values["charts/task_reward"])
    assert all(v >= 0 for t in TIMES for v in values[t])
    assert all(v > 0 for v in values["time/tokens_per_s"] + values["time/generation"])
    # the config as text
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    config = json.loads(text.strip().strip("`"))
    assert config["algo"] == "ppo_pp" and config["beta"] == 1.0 and config["kl_coef"] == 0.03
    assert set(config) >= {f.name for f in dataclasses.fields(cfg)} | {"init_from"}


def test_default_output_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = ppo_pp_config(tmp_path, total_iterations=1, seed=2)
    out = run_ppo_pp(dataclasses.replace(cfg, output_dir=""))
    assert out == Path("runs/ppo_pp-Reverse-v0-s2")
    assert latest_checkpoint(tmp_path / out).name == "iter-000001"
    assert np.isfinite(scalar_series(tmp_path / out, "charts/task_reward")[0][1])


def test_resume_of_a_bc_plus_x_run_keeps_the_loaded_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--resume without --init-from restores the KL reference of a BC+X run."""
    donor = run_ppo_pp(ppo_pp_config(tmp_path / "donor", seed=5))
    patch_update(monkeypatch, no_update)
    cfg = ppo_pp_config(tmp_path / "warm", total_iterations=1, checkpoint_every=1)
    run(cfg, "ppo_pp", init_from=str(donor))
    seen: dict[str, bool] = {}

    def spy(ac: Any, *args: Any) -> dict[str, float]:
        ref = dict(ac.reference.named_parameters())
        donor_weights = weights(donor)
        seen["ref_is_donor"] = all(
            torch.equal(p, donor_weights[f"model.{n}"]) for n, p in ref.items()
        )
        return {}

    patch_update(monkeypatch, spy)
    cfg = ppo_pp_config(tmp_path / "warm", total_iterations=2, checkpoint_every=1)
    run(cfg, "ppo_pp", resume=True)
    assert seen["ref_is_donor"]
