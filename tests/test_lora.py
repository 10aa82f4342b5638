"""LoRA policies (peft): adapters-only training, adapter-disabled reference, checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import ppo
from agents.build import build_learner, build_policy, build_tokenizer_and_model
from agents.checkpoint import load_checkpoint, save_checkpoint
from agents.engine import Plan, Rollout, collect
from agents.policy import ActorCritic
from agents.ppo import PPOConfig
from agents.saved_policy import load_policy
from agents.trainer import run

pytest.importorskip("peft")

TOL = dict(rtol=1e-4, atol=1e-5)


def _cfg(seq2seq: bool, **kwargs: object) -> PPOConfig:
    fields: dict = dict(
        lora_rank=4, seq2seq=seq2seq, batch_size=8, minibatch_size=4, update_epochs=2,
        learning_rate=1e-2, top_k=0, kl_coef=0.1,
    )  # fmt: skip
    fields.update(kwargs)
    return PPOConfig(**fields)


def _base(cfg: PPOConfig, vocab: int) -> ActorCritic:
    """The same seeded LM as ``build_policy(cfg)`` starts from, without LoRA."""
    _, model = build_tokenizer_and_model(cfg, vocab)
    return ActorCritic(model)


def _rollout(ac: ActorCritic, tokenizer: object, envs: object, cfg: PPOConfig) -> Rollout:
    """π's episodes, with task rewards replaced by a spread so that an update has a signal
    (an untrained policy often scores 0 on every episode, which leaves PPO nothing to do)."""
    envs.reset(seed=0)  # type: ignore[attr-defined]
    ac.eval()
    learner = build_learner(ac, tokenizer, cfg)
    rollout = collect(envs, learner, None, Plan(), np.random.default_rng(0))  # type: ignore[arg-type]
    rollout.task_rewards = torch.linspace(-1.0, 1.0, rollout.input_ids.shape[0])
    return rollout


@pytest.mark.parametrize("seq2seq", [False, True], ids=["causal", "t5"])
def test_lora_trains_adapters_only_against_the_adapter_disabled_base(seq2seq: bool) -> None:
    cfg = _cfg(seq2seq)
    ac, tokenizer, envs = build_policy(cfg)
    assert ac.is_lora and ac.seq2seq == seq2seq
    assert ac.reference is None  # no copy of the LM for π_ref
    base_model = ac.model.get_base_model()
    lm_params = sum(p.numel() for p in ac.model.parameters())
    head_params = sum(p.numel() for p in ac.value_head.parameters())
    assert sum(p.numel() for p in ac.parameters()) == lm_params + head_params  # nothing else

    trainable = [n for n, p in ac.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("value_head.") for n in trainable)
    assert {"value_head.weight", "value_head.bias"} <= set(trainable)
    assert any("lora_" in n for n in trainable)
    assert {id(p) for p in ac.trainable_parameters()} == {
        id(p) for p in ac.parameters() if p.requires_grad
    }
    frozen = {n: p.detach().clone() for n, p in base_model.named_parameters() if "lora_" not in n}

    vocab = envs.unwrapped.task.vocab_size
    base = _base(cfg, vocab).eval()
    rollout = _rollout(ac, tokenizer, envs, cfg)
    ids, mask, width = rollout.input_ids, rollout.attention_mask, rollout.prompt_width
    with torch.no_grad():
        base_logits = base(ids, mask, width)[0]
        policy_before = ac(ids, mask, width)[0]
    torch.testing.assert_close(ac.reference_logits(ids, mask, width), base_logits, **TOL)
    torch.testing.assert_close(policy_before, base_logits, **TOL)  # LoRA B starts at zero

    optimizer = torch.optim.AdamW(ac.trainable_parameters(), lr=cfg.learning_rate)
    rng = np.random.default_rng(0)
    for _ in range(2):
        batch = ppo.score(ac, rollout, cfg, cfg.kl_coef)
        stats = ppo.update(ac, optimizer, batch, cfg, rng)
        assert np.isfinite(list(stats.values())).all()
    ac.eval()
    with torch.no_grad():
        policy_after = ac(ids, mask, width)[0]
    assert not torch.allclose(policy_after, base_logits, **TOL)  # π moved
    torch.testing.assert_close(ac.reference_logits(ids, mask, width), base_logits, **TOL)
    for n, p in base_model.named_parameters():  # the base weights did not move
        if n in frozen:
            assert torch.equal(p, frozen[n]), n


@pytest.mark.parametrize("seq2seq", [False, True], ids=["causal", "t5"])
def test_lora_checkpoint_round_trip(tmp_path: Path, seq2seq: bool) -> None:
    cfg = _cfg(seq2seq, output_dir=str(tmp_path / "run"), total_iterations=1)
    ac, tokenizer, envs = build_policy(cfg)
    rollout = _rollout(ac, tokenizer, envs, cfg)
    optimizer = torch.optim.AdamW(ac.trainable_parameters(), lr=cfg.learning_rate)
    rng = np.random.default_rng(0)
    ppo.update(ac, optimizer, ppo.score(ac, rollout, cfg, cfg.kl_coef), cfg, rng)
    ac.eval()
    config = {"algo": "ppo", **dataclasses.asdict(cfg), "init_from": None}
    save_checkpoint(tmp_path / "saved", 1, policy_state=ac.policy_state(), trainer_state={},
                    config=config)  # fmt: skip
    loaded, _, loaded_config = load_policy(str(tmp_path / "saved"))
    assert loaded.is_lora and loaded.reference is None and loaded_config["lora_rank"] == 4
    # only the trainable tensors (adapters, value head) are stored, not the frozen base
    stored = load_checkpoint(tmp_path / "saved")[0]
    assert set(stored) == {n for n, p in ac.named_parameters() if p.requires_grad}
    with pytest.raises(ValueError, match="does not fit"):
        loaded.load_policy_state({k: v for k, v in stored.items() if "value_head" not in k})
    ids, mask, width = rollout.input_ids, rollout.attention_mask, rollout.prompt_width
    with torch.no_grad():
        want, want_values = ac(ids, mask, width)
        got, got_values = loaded(ids, mask, width)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(got_values, want_values, **TOL)
    torch.testing.assert_close(
        loaded.reference_logits(ids, mask, width), ac.reference_logits(ids, mask, width), **TOL
    )
    assert not torch.allclose(got, loaded.reference_logits(ids, mask, width), **TOL)


def test_lora_training_run_changes_only_adapters(tmp_path: Path) -> None:
    cfg = _cfg(False, output_dir=str(tmp_path), total_iterations=2, checkpoint_every=2)
    run(cfg, "ppo")
    trained, _, _ = load_policy(str(tmp_path))
    initial, _, _ = build_policy(cfg)
    before = dict(initial.named_parameters())
    changed = {n for n, p in trained.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n or n.startswith("value_head.") for n in changed)
    assert any("lora_B" in n for n in changed)
