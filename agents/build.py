"""Build the pieces of a run from its config: envs, policy, tokenizer, π's actor, the guide
(in-process, or a model behind an OpenAI-compatible server) or demonstrator.

The toy tasks' experts and model sizes are literal tables here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch

import textgen_env  # noqa: F401  (registers ids)
from agents.bc import BCConfig
from agents.config import TrainConfig
from agents.distributed import check_processes, lone_process_of_several, world_size
from agents.learner import LearnerPolicy
from agents.policy import ActorCritic
from agents.rundir import RunSetupError
from textgen_env.errors import GuideError
from textgen_env.guides import ReferenceGuide, ScriptedGuide
from textgen_env.guides.api import APIGuide, check_server
from textgen_env.guides.base import GuidePolicy
from textgen_env.models import load_causal_lm, load_seq2seq_lm, tiny_causal_lm, tiny_seq2seq_lm
from textgen_env.packed import prepacking_enabled
from textgen_env.tasks import default_guide, guide_template
from textgen_env.tasks.toy import positive_expert, reverse_expert, twist_expert
from textgen_env.vector import TextGenVectorEnv

__all__ = [
    "TOY_EXPERTS",
    "RunSetupError",
    "api_prompt_template",
    "build_api_guide",
    "build_envs",
    "build_guide",
    "build_learner",
    "build_policy",
    "check_guide_server",
    "check_setup",
    "is_seq2seq_model",
    "scripted_guide",
]


# Toy tasks: their optimal expert (the scripted guide adds ε-noise to it).
TOY_EXPERTS: dict[str, Callable] = {
    "textgen_env/Reverse-v0": reverse_expert,
    "textgen_env/Positive-v0": positive_expert,
    "textgen_env/Twist-v0": twist_expert,
}
# A tiny LM learns the toy tasks in minutes on 2 CPU cores.
TOY_MODEL = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "max_positions": 64}
# The same size as an encoder-decoder (``--seq2seq``): 2 encoder and 2 decoder layers, T5's
# own initialisation (a 10x smaller one starts closer to uniform but learns far slower).
TOY_SEQ2SEQ_MODEL = {"hidden_size": 64, "num_layers": 2, "num_heads": 4}


def is_toy(env_id: str) -> bool:
    """Whether ``env_id`` is a toy task (tiny random policy, scripted guide)."""
    return env_id in TOY_EXPERTS


def is_seq2seq_model(name_or_path: str) -> bool:
    """Whether the hub model or local folder ``name_or_path`` is an encoder-decoder LM."""
    from transformers import AutoConfig

    return bool(getattr(AutoConfig.from_pretrained(name_or_path), "is_encoder_decoder", False))


def build_tokenizer_and_model(cfg: TrainConfig, vocab_size: int | None = None) -> tuple[Any, Any]:
    """The policy LM and its tokenizer (``None`` tokenizer: use the toy env's).

    Toy tasks without ``cfg.model`` get a tiny random LM (a T5 if ``cfg.seq2seq``). A named
    model is loaded as an encoder-decoder when its config says so, else as a causal LM.
    """
    if is_toy(cfg.env_id) and cfg.model is None:
        assert vocab_size is not None
        if cfg.seq2seq:
            return None, tiny_seq2seq_lm(vocab_size, seed=cfg.seed, **TOY_SEQ2SEQ_MODEL)
        return None, tiny_causal_lm(vocab_size, seed=cfg.seed, **TOY_MODEL)
    if cfg.model is None:
        if cfg.seq2seq:
            raise ValueError("seq2seq on a real task needs --model naming an encoder-decoder LM")
        model, tokenizer = load_causal_lm(None, device=cfg.device)
    elif is_seq2seq_model(cfg.model):
        model, tokenizer = load_seq2seq_lm(cfg.model, device=cfg.device)
    elif cfg.seq2seq:
        raise ValueError(f"seq2seq is set but {cfg.model} is not an encoder-decoder model")
    else:
        model, tokenizer = load_causal_lm(cfg.model, device=cfg.device)
    return tokenizer, model


def check_setup(cfg: TrainConfig, *, guide_server: bool = False, processes: bool = False) -> None:
    """Raise :class:`RunSetupError` when ``cfg`` names an unknown env or an unusable device,
    when ``TEXTGEN_ENV_PREPACK`` is neither 0 nor 1 (:mod:`textgen_env.packed`),
    or when the process was started as one of several (``accelerate launch``, ``torchrun``)
    and either the caller trains in one process only (``processes`` False: each process would
    train its own copy into the same run directory) or the processes cannot share this run
    (:func:`~agents.distributed.check_processes`). With ``guide_server`` (a run that asks its
    guide), a served guide that cannot work is refused too (:func:`check_guide_server`);
    evaluating or exporting a policy never needs the server."""
    world = world_size()
    if processes and lone_process_of_several():
        raise RunSetupError(
            "accelerate launch was asked for several processes but started one: its --cpu or "
            "MULTI_CPU launcher needs mpirun for more; launch with --multi_gpu (also on CPUs) "
            "or --config_file configs/accelerate/cpu.yaml, which start them through torchrun"
        )
    if world > 1 and not processes:
        raise RunSetupError(
            f"this process is one of {world} (WORLD_SIZE={world}), but only training "
            "(python -m agents.train) runs with several processes (evaluation, export and data "
            "files run in one, and each process would repeat the work): start a single process"
        )
    try:
        prepacking_enabled()  # read at every roll-out: refused here, before any work
    except ValueError as err:
        raise RunSetupError(str(err)) from err
    if cfg.env_id not in gym.registry:
        ids = sorted(k for k in gym.registry if k.startswith("textgen_env/"))
        raise RunSetupError(f"unknown env id {cfg.env_id!r}; registered: {', '.join(ids)}")
    try:
        device = torch.device(cfg.device)
    except RuntimeError as err:
        raise RunSetupError(f"device {cfg.device!r}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunSetupError(f"device {cfg.device!r}: no CUDA device is available here")
    if cfg.bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RunSetupError(f"--bf16: device {cfg.device!r} does not support bfloat16")
    if world > 1:
        check_processes(cfg, world)
    if guide_server and cfg.guide_api_base:
        check_guide_server(cfg)


def check_guide_server(cfg: TrainConfig) -> None:
    """Refuse (:class:`RunSetupError`) a served guide that cannot work: a toy task without a
    prompt template, no ``openai`` client, no server answering at ``cfg.guide_api_base``, or
    one that does not serve ``cfg.guide_api_model``. Asks the server once (``GET /models``)."""
    if is_toy(cfg.env_id) and not cfg.guide_api_prompt_template:
        raise RunSetupError(
            f"{cfg.env_id} has no guide template for a served guide; pass "
            "--guide-api-prompt-template"
        )
    try:
        check_server(cfg.guide_api_base, cfg.guide_api_model, timeout_s=cfg.guide_api_timeout_s)
    except ImportError as err:
        raise RunSetupError(str(err)) from err
    except GuideError as err:
        raise RunSetupError(f"guide server: {err}") from err


def build_envs(cfg: TrainConfig, tokenizer: Any = None, split: str = "train") -> TextGenVectorEnv:
    """The vector env of the run (``tokenizer`` replaces a real task's default one)."""
    kwargs: dict[str, Any] = {"split": split}
    if tokenizer is not None and not is_toy(cfg.env_id):
        kwargs["tokenizer"] = tokenizer
    return gym.make_vec(
        cfg.env_id, num_envs=cfg.batch_size, vectorization_mode="vector_entry_point", **kwargs
    )


def build_policy(cfg: TrainConfig) -> tuple[ActorCritic, Any, TextGenVectorEnv]:
    """ActorCritic (with LoRA when ``cfg.lora_rank > 0``), tokenizer and train envs."""
    torch.manual_seed(cfg.seed)
    if is_toy(cfg.env_id) and cfg.model is None:
        envs = build_envs(cfg)
        tokenizer = envs.unwrapped.task.tokenizer  # the toy task's own tokenizer
        _, model = build_tokenizer_and_model(cfg, envs.unwrapped.task.vocab_size)
    else:
        tokenizer, model = build_tokenizer_and_model(cfg)
        envs = build_envs(cfg, tokenizer)
    if cfg.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, target_modules="all-linear"
        )
        model = get_peft_model(model, lora)
    ac = ActorCritic(
        model,
        separate_critic=cfg.separate_critic,
        bf16=cfg.bf16,
        activation_checkpointing=cfg.activation_checkpointing,
    ).to(cfg.device)
    return ac, tokenizer, envs


def build_learner(ac: ActorCritic, tokenizer: Any, cfg: TrainConfig) -> LearnerPolicy:
    """π as an actor in the env (KV-cached sampling, stops only at the env's EOS)."""
    return LearnerPolicy(
        ac.model,
        eos_token_id=tokenizer.eos_token_id,
        vocab_limit=len(tokenizer),
        top_k=cfg.top_k,
        temperature=cfg.temperature,
        bf16=cfg.bf16,
    )


def build_guide(cfg: TrainConfig, envs: TextGenVectorEnv, ac: ActorCritic) -> GuidePolicy:
    """The task's guide: the served model when ``cfg.guide_api_base`` is set
    (:func:`build_api_guide`), else the ε-noisy scripted expert on a toy task, else the
    instruct LM told the task in its prompt (:func:`textgen_env.tasks.default_guide`). With
    the default policy model the guide's LM is π's frozen reference (one copy for both)."""
    task = envs.unwrapped.task
    if cfg.guide_api_base:
        return build_api_guide(cfg, task.tokenizer)
    if is_toy(cfg.env_id):
        return scripted_guide(cfg.env_id, task.vocab_size, cfg.guide_epsilon)
    if cfg.model is None and ac.reference is not None:
        return default_guide(
            cfg.env_id, task.tokenizer, model=ac.reference, tokenizer=task.tokenizer
        )
    return default_guide(cfg.env_id, task.tokenizer)


def api_prompt_template(cfg: TrainConfig, tokenizer: Any) -> str:
    """The served guide's prompt template: ``cfg.guide_api_prompt_template``, else the task's
    guide template, which on the completions endpoint is wrapped as a user turn in the policy
    tokenizer's chat template when it has one (what the in-process default guide sees)."""
    if cfg.guide_api_prompt_template:
        return cfg.guide_api_prompt_template
    template = guide_template(cfg.env_id)
    if cfg.guide_api_endpoint == "completions" and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": template}], add_generation_prompt=True, tokenize=False
        )
    return template


def build_api_guide(cfg: TrainConfig, tokenizer: Any) -> APIGuide:
    """An :class:`~textgen_env.guides.api.APIGuide` from the ``guide_api_*`` fields (the key
    from ``$OPENAI_API_KEY``); ``tokenizer`` is the policy's."""
    return APIGuide(
        cfg.guide_api_base,
        cfg.guide_api_model,
        tokenizer,
        endpoint=cfg.guide_api_endpoint,
        prompt_template=api_prompt_template(cfg, tokenizer),
        temperature=cfg.guide_api_temperature,
        top_p=cfg.guide_api_top_p,
        extra_body=cfg.guide_api_extra,
        timeout_s=cfg.guide_api_timeout_s,
        max_retries=cfg.guide_api_max_retries,
        max_concurrency=cfg.guide_api_concurrency,
        cache_dir=cfg.guide_api_cache_dir or None,
    )


def build_demonstrator(cfg: BCConfig, envs: TextGenVectorEnv, ac: ActorCritic) -> GuidePolicy:
    """BC's demonstrator: the references replayed (checked to exist), or the task's guide."""
    if cfg.demonstrations == "guide":
        return build_guide(cfg, envs, ac)
    task = envs.unwrapped.task
    if not all(p.references for p in task.prompts):
        raise RunSetupError(
            f"{cfg.env_id} has no reference texts to clone; use --demonstrations guide "
            "(the task's guide writes the demonstrations)"
        )
    return ReferenceGuide(task.tokenizer)


def scripted_guide(env_id: str, vocab_size: int, epsilon: float) -> GuidePolicy:
    """The toy task's ε-noisy expert."""
    return ScriptedGuide(TOY_EXPERTS[env_id], vocab_size=vocab_size, epsilon=epsilon)
