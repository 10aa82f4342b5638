"""The agents and guides on a CUDA device: every algorithm trains there (fp32 and bf16), its run
evaluates there and loads on a CPU, and a Hugging Face guide samples there. Skipped on a
machine without CUDA (CI); run on a GPU machine with ``pytest tests/test_cuda.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agents.algorithms import ALGORITHMS, OfflineAlgorithm
from agents.checkpoint import load_checkpoint
from agents.evaluate import evaluate
from agents.saved_policy import load_policy
from agents.train import main
from textgen_env.guides import HFGuide
from textgen_env.models import tiny_causal_lm
from textgen_env.tasks.toy import make_reverse_vector_env, reverse_tokenizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY = ["--batch-size", "8", "--top-k", "0", "--learning-rate", "1e-3", "--device", "cuda"]
OFFLINE_TINY = {
    "alol": ["--value-steps", "5", "--value-samples", "1"],
    "rest": ["--thresholds", "50", "--minibatch-size", "4", "--max-prompts", "4"],
}


def cuda_flags(algo: str, out: Path, iterations: int = 2) -> list[str]:
    flags = ["--algo", algo, "--output-dir", str(out), "--total-iterations", str(iterations)]
    flags += TINY
    if isinstance(ALGORITHMS[algo], OfflineAlgorithm):
        return flags + OFFLINE_TINY.get(algo, OFFLINE_TINY["alol"])
    flags += ["--minibatch-size", "4"]
    if algo != "bc":
        flags += ["--update-epochs", "1"]
    return flags + {"lols": ["--tau", "0.5"], "d2lols": ["--tau", "1"]}.get(algo, [])


def finite_and_moved(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    assert before.keys() == after.keys()
    assert all(torch.isfinite(t.float()).all() for t in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in after), "no parameter changed"


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_algo_trains_on_cuda(algo: str, bf16: bool, tmp_path: Path) -> None:
    main(cuda_flags(algo, tmp_path / "init", iterations=0) + (["--bf16"] if bf16 else []))
    main(cuda_flags(algo, tmp_path / "run") + (["--bf16"] if bf16 else []))
    init, _, _ = load_checkpoint(tmp_path / "init")
    policy, trainer, config = load_checkpoint(tmp_path / "run")  # read onto the CPU
    assert config["device"] == "cuda" and trainer is not None
    assert trainer["iterations_done"] == 2
    finite_and_moved(init, policy)


@pytest.mark.parametrize(
    "option",
    [["--lora-rank", "4"], ["--activation-checkpointing"], ["--separate-critic"], ["--seq2seq"]],
    ids=lambda option: option[0].removeprefix("--"),
)
def test_policy_options_train_on_cuda(option: list[str], tmp_path: Path) -> None:
    main([*cuda_flags("d2lols", tmp_path / "init", iterations=0), *option, "--bf16"])
    main([*cuda_flags("d2lols", tmp_path / "run"), *option, "--bf16"])
    init, _, _ = load_checkpoint(tmp_path / "init")
    policy, _, _ = load_checkpoint(tmp_path / "run")
    finite_and_moved(init, policy)


def test_a_cuda_run_evaluates_on_cuda_and_on_the_cpu(tmp_path: Path) -> None:
    main(cuda_flags("ppo_pp", tmp_path))
    on_gpu = evaluate(str(tmp_path), num_samples=8, batch_size=4, num_beams=3)
    on_cpu = evaluate(str(tmp_path), num_samples=8, batch_size=4, num_beams=3, device="cpu")
    assert on_gpu["metrics"].keys() == on_cpu["metrics"].keys()
    # Beam search is deterministic: the two devices may differ only where logits tie.
    pairs = list(zip(on_gpu["samples"], on_cpu["samples"], strict=True))
    assert sum(a["generation"] == b["generation"] for a, b in pairs) >= 6, pairs
    policy, _, _ = load_policy(tmp_path)
    assert next(policy.parameters()).device.type == "cuda"


@pytest.mark.parametrize("handoff", [False, True], ids=["fast-path", "text-handoff"])
def test_hf_guide_samples_on_cuda(handoff: bool) -> None:
    envs = make_reverse_vector_env(num_envs=6)
    envs.reset(seed=0)
    tokenizer = reverse_tokenizer()
    model = tiny_causal_lm(len(tokenizer), seed=3).to("cuda").eval()
    extra = {"prompt_template": "{prompt}"} if handoff else {}
    guide = HFGuide(model, tokenizer, top_k=5, **extra)
    asked = [1, 2, 3, 4, 5, 6]
    first = guide.act(list(envs.get_states()), asked, np.random.default_rng(0))
    again = guide.act(list(envs.get_states()), asked, np.random.default_rng(0))
    assert first == again  # seeded from rng through a generator on the model's device
    for ids, k in zip(first, asked, strict=True):
        assert 1 <= len(ids) <= k and all(0 <= t < len(tokenizer) for t in ids)
