"""ActorCritic (agents.policy) on a causal LM: its logits and values are the model's own at
the right columns, with and without the logits_to_keep shortcut."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgen_env  # noqa: F401  (registers the ids)
from agents.build import TOY_MODEL
from agents.engine import Plan, collect
from agents.learner import LearnerPolicy
from agents.policy import ActorCritic, _accepts, position_ids
from textgen_env.models import tiny_causal_lm


class NoKeep(torch.nn.Module):
    """The same LM behind a forward without ``logits_to_keep`` (an older or custom model)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.config = model, model.config

    def forward(self, input_ids, attention_mask, position_ids, output_hidden_states, use_cache):  # type: ignore[no-untyped-def]
        return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids, output_hidden_states=output_hidden_states,
                          use_cache=use_cache)  # fmt: skip


@pytest.mark.parametrize("wrap", [False, True], ids=["logits_to_keep", "full_logits"])
def test_causal_logits_and_values_at_the_generated_columns(wrap: bool) -> None:
    model = tiny_causal_lm(11, seed=3, **TOY_MODEL).eval()
    envs = gym.make_vec(
        "textgen_env/Reverse-v0", num_envs=6, vectorization_mode="vector_entry_point"
    )
    envs.reset(seed=0)
    learner = LearnerPolicy(model, eos_token_id=1, vocab_limit=11, top_k=0, temperature=1.0)
    r = collect(envs, learner, None, Plan(), np.random.default_rng(0))
    ac = ActorCritic(NoKeep(model) if wrap else model)
    assert _accepts(ac.model, "logits_to_keep") is not wrap
    with torch.no_grad():
        logits, values = ac(r.input_ids, r.attention_mask, r.prompt_width)
        positions = position_ids(r.attention_mask)
        full = model(input_ids=r.input_ids, attention_mask=r.attention_mask,
                     position_ids=positions, output_hidden_states=True)  # fmt: skip
    p, g = r.prompt_width, r.tokens.shape[1]
    assert logits.shape == (6, g, 11) and values.shape == (6, g, 2)
    torch.testing.assert_close(logits, full.logits[:, p - 1 : p + g - 1], rtol=1e-5, atol=1e-5)
    hidden = full.hidden_states[-1][:, p - 1 : p + g - 1]
    torch.testing.assert_close(values, ac.value_head(hidden), rtol=1e-5, atol=1e-5)


def test_causal_pass_reads_the_last_hidden_state_only() -> None:
    """Issue #9: the value head reads the LM head's input; the model is not asked for every
    layer's hidden states, and its LM head sees only the kept columns."""
    model = tiny_causal_lm(11, seed=3, **TOY_MODEL).eval()
    asked: list[bool] = []
    widths: list[int] = []
    model.register_forward_pre_hook(
        lambda _, args, kwargs: asked.append(kwargs["output_hidden_states"]), with_kwargs=True
    )
    model.get_output_embeddings().register_forward_pre_hook(
        lambda _, args: widths.append(args[0].shape[1])
    )
    ids = torch.tensor([[0, 3, 4, 5, 6, 2, 7], [3, 3, 4, 5, 6, 2, 7]])
    with torch.no_grad():
        ActorCritic(model)(ids, torch.ones_like(ids), 3)
    assert asked == [False] and widths == [5]  # G + 1 = 5 columns of 7


def test_columns_padded_in_every_row_are_not_computed() -> None:
    """Issue #9: the prompt block's leading columns that are padding in every row are dropped
    before the forward pass; every row's logits and values are those of the padded batch."""
    model = tiny_causal_lm(11, seed=3, **TOY_MODEL).eval()
    ac = ActorCritic(model)  # before the hook: π_ref, a copy, does not carry it
    widths: list[int] = []
    model.register_forward_pre_hook(
        lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    ids = torch.tensor([[3, 4, 5, 6, 2, 7], [0, 3, 4, 5, 2, 7]])  # P = 4, G = 2
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0]])
    pad = 3  # three more columns of padding in both rows
    wide_ids = torch.cat([torch.zeros(2, pad, dtype=torch.long), ids], dim=1)
    wide_mask = torch.cat([torch.zeros(2, pad, dtype=torch.long), mask], dim=1)
    with torch.no_grad():
        logits, values = ac(ids, mask, 4)
        wide_logits, wide_values = ac(wide_ids, wide_mask, 4 + pad)
        ref = ac.reference_logits(wide_ids, wide_mask, 4 + pad)
        feats = ac.reference_prompt_features(wide_ids, wide_mask, 4 + pad)
    assert widths == [6, 6]  # the padded batch's pass saw the same six columns
    assert wide_logits.shape == (2, 2, 11) and wide_values.shape == (2, 2, 2)
    torch.testing.assert_close(wide_logits, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(wide_values, values, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref, logits, rtol=1e-5, atol=1e-5)  # π_ref = initial π
    assert feats.shape == (2, TOY_MODEL["hidden_size"])
    # A batch whose prompt block is all padding still predicts its first token from column P-1.
    with torch.no_grad():
        empty, _ = ac(torch.tensor([[0, 0, 5]]), torch.tensor([[0, 0, 1]]), 2)
    assert empty.shape == (1, 1, 11) and widths[-1] == 2


def test_bf16_autocast_is_close_to_fp32_and_trains(tmp_path: object) -> None:
    """``bf16=True``: the LM passes run in bf16, log-probs stay fp32, a run trains."""
    from agents.ppo import PPOConfig
    from agents.trainer import run

    model = tiny_causal_lm(11, seed=3, **TOY_MODEL).eval()
    ids = torch.tensor([[0, 3, 4, 5, 6, 2, 7]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        fp32 = ActorCritic(model)(ids, mask, 3)[0]
        bf16 = ActorCritic(model, bf16=True)(ids, mask, 3)[0]
    assert bf16.dtype == torch.bfloat16 and fp32.dtype == torch.float32
    torch.testing.assert_close(bf16.float(), fp32, rtol=0.05, atol=0.05)
    # π_ref runs through the same arithmetic as π (fp32 weights under autocast), so before any
    # update the KL penalty is exactly 0 and A-LoL's sequence ratio π/π_ref exactly 1: a π_ref
    # held in bf16 would differ by rounding on every token, and the ratio compounds it.
    ac = ActorCritic(model, bf16=True)
    with torch.no_grad():
        assert torch.equal(ac(ids, mask, 3)[0], ac.reference_logits(ids, mask, 3))
    cfg = PPOConfig(total_iterations=2, batch_size=4, minibatch_size=2, update_epochs=1,
                    learning_rate=1e-3, top_k=0, bf16=True, output_dir=str(tmp_path))  # fmt: skip
    run(cfg, "ppo")  # the divergence guard would stop a run with non-finite losses


@pytest.mark.parametrize("lora", [False, True])
def test_activation_checkpointing_recomputes_layers_with_the_same_gradients(lora: bool) -> None:
    """``activation_checkpointing``: each layer runs twice in a forward + backward (once
    more while backpropagating), dropout stays off, and the gradients are the same."""

    def grads(checkpointing: bool) -> tuple[dict[str, torch.Tensor], int]:
        model = tiny_causal_lm(11, seed=3, attention_dropout=0.5, **TOY_MODEL)
        if lora:
            from peft import LoraConfig, get_peft_model

            torch.manual_seed(0)  # the same adapter initialisation in both models
            model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
        ac = ActorCritic(model, activation_checkpointing=checkpointing).eval()
        layers = [m for m in ac.modules() if type(m).__name__ == "LlamaDecoderLayer"]
        calls = []
        mlp = layers[0].mlp  # inside the layer; a spy, as hooks do not fire on recompute
        forward = mlp.forward
        mlp.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
        ids = torch.tensor([[0, 3, 4, 5, 6, 2, 7], [0, 0, 4, 4, 9, 1, 1]])
        mask = torch.tensor([[1] * 7, [0, 1, 1, 1, 1, 1, 1]])
        logits, values = ac(ids, mask, 3)
        (logits.logsumexp(-1).sum() + values.sum()).backward()
        named = {n: p.grad.clone() for n, p in ac.named_parameters() if p.grad is not None}
        return named, len(calls)

    plain, plain_calls = grads(False)
    checkpointed, calls = grads(True)
    assert (plain_calls, calls) == (1, 2)
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():  # eval mode: no dropout noise in either
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_optimizer_is_fused_adamw_over_the_trainable_parameters_with_adamws_steps(
    lora: bool,
) -> None:
    """``ActorCritic.optimizer``: fused on CPU, only the trainable parameters, and three steps
    land on the weights torch's default AdamW reaches, up to float rounding."""

    def build() -> ActorCritic:
        model = tiny_causal_lm(11, seed=3, **TOY_MODEL)
        if lora:
            from peft import LoraConfig, get_peft_model

            torch.manual_seed(0)
            model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
        return ActorCritic(model).eval()

    ids = torch.tensor([[0, 3, 4, 5, 6, 2, 7], [0, 0, 4, 4, 9, 1, 1]])
    mask = torch.tensor([[1] * 7, [0, 1, 1, 1, 1, 1, 1]])
    weights = []
    for ours in (True, False):
        ac = build()
        params = ac.trainable_parameters()
        opt = ac.optimizer(1e-2) if ours else torch.optim.AdamW(params, lr=1e-2)
        if ours:
            assert opt.param_groups[0]["fused"] is True
            assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in params}
        for _ in range(3):
            logits, values = ac(ids, mask, 3)
            opt.zero_grad()
            (logits.logsumexp(-1).sum() + values.sum()).backward()
            opt.step()
        weights.append([p.detach().clone() for p in params])
    if lora:  # the adapters (and the value head) only
        assert len(weights[0]) < sum(1 for _ in build().parameters())
    for fused, plain in zip(*weights, strict=True):
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)  # float rounding


def test_to_moves_the_reference_copy_but_not_a_reference_passed_in() -> None:
    # `.to()` on a CPU-only machine: a dtype stands in for a device (tests/test_cuda.py moves it).
    own = ActorCritic(tiny_causal_lm(11, seed=0, **TOY_MODEL)).to(torch.float64)
    assert own.reference is not None
    assert {p.dtype for p in own.reference.parameters()} == {torch.float64}
    guide_model = tiny_causal_lm(11, seed=1, **TOY_MODEL)
    shared = ActorCritic(tiny_causal_lm(11, seed=0, **TOY_MODEL), reference=guide_model)
    shared.to(torch.float64)
    assert {p.dtype for p in shared.model.parameters()} == {torch.float64}
    assert {p.dtype for p in guide_model.parameters()} == {torch.float32}  # its owner's to move


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_activation_checkpointing_is_on_only_in_passes_with_gradients(mode: str) -> None:
    """Checkpointed modules are in train mode (checkpointing) in a pass with gradients and not
    in one without: transformers before 5.24 drops the KV cache of a train-mode checkpointed
    module even under no_grad, which broke sampling (seen with 5.17 on a GPU machine)."""
    ac = ActorCritic(tiny_causal_lm(11, seed=3, **TOY_MODEL), activation_checkpointing=True)
    ac.train(mode == "train")
    layer = next(m for m in ac.modules() if type(m).__name__ == "LlamaDecoderLayer")
    seen: list[bool] = []
    layer.register_forward_pre_hook(lambda module, _: seen.append(module.training))
    ids, mask = torch.tensor([[0, 3, 4, 5, 6, 2]]), torch.ones(1, 6, dtype=torch.long)
    ac(ids, mask, 3)
    with torch.no_grad():
        out = ac.model(input_ids=ids, attention_mask=mask, use_cache=True)
    assert seen == [True, False]
    assert out.past_key_values is not None and out.past_key_values.get_seq_length() == 6
