"""``python -m agents.train --algo ALGO --env-id ID [...]``: train a policy.

Every config field is a flag (``--help`` lists them with their documentation). Presets
(``--preset paper`` / ``--preset cpu-small``) set several at once; explicit flags win.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from agents.build import is_toy, scripted_guide
from agents.cli import ALGOS, PRESETS, add_config_arguments, config_from_args
from agents.config import TrainConfig
from agents.trainer import run, run_dir
from textgen_env.guides import GuidePolicy, ReferenceGuide

__all__ = ["main"]


def parser_for(algo: str | None) -> argparse.ArgumentParser:
    """The CLI parser; with a known ``algo`` it has one flag per config field."""
    parser = argparse.ArgumentParser(prog="python -m agents.train", description=__doc__)
    parser.add_argument("--algo", choices=sorted(ALGOS), required=True, help="algorithm to run")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a set of defaults")
    parser.add_argument("--init-from", help="checkpoint or run dir to start from (BC+X)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    if algo in ALGOS:
        add_config_arguments(parser, ALGOS[algo][0])
    return parser


def guide_for(cfg: TrainConfig) -> Callable[[Any], GuidePolicy] | None:
    """The run's guide builder: ``envs -> GuidePolicy`` (None when the algorithm needs none)."""
    epsilon = getattr(cfg, "guide_epsilon", None)
    if epsilon is None:
        return None
    if is_toy(cfg.env_id):
        return lambda envs, ac=None: scripted_guide(
            cfg.env_id, envs.unwrapped.task.vocab_size, epsilon
        )
    from textgen_env.tasks import default_guide  # real tasks: the prompted instruct LM

    def build(envs: Any, ac: Any = None) -> GuidePolicy:
        tokenizer = envs.unwrapped.task.tokenizer
        if cfg.model is None and ac is not None and ac.reference is not None:
            # The guide is the prompted default LM, i.e. the policy's frozen reference: share it.
            return default_guide(cfg.env_id, tokenizer, model=ac.reference, tokenizer=tokenizer)
        return default_guide(cfg.env_id, tokenizer)

    return build


def main(argv: list[str] | None = None) -> None:
    """Parse the command line (defaults < preset < flags) and run the training loop."""
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--algo")
    parser = parser_for(pre.parse_known_args(argv)[0].algo)  # --help then lists its flags
    args = parser.parse_args(argv)
    _, plan_fn, update_fn = ALGOS[args.algo]
    try:
        cfg = config_from_args(args.algo, args, args.preset)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    guide = demonstrator = None
    if args.algo == "bc":
        if cfg.demonstrations == "reference":
            demonstrator = lambda envs, ac=None: ReferenceGuide(envs.unwrapped.task.tokenizer)
        else:
            demonstrator = guide_for(cfg)
    else:
        guide = guide_for(cfg)
    if args.resume and not (run_dir(cfg, args.algo) / "checkpoints" / "latest").is_file():
        parser.error(f"--resume: no checkpoint in {run_dir(cfg, args.algo)}")
    out = run(
        cfg, plan_fn, update_fn, algo=args.algo, guide=guide, demonstrator=demonstrator,
        init_from=args.init_from, resume=args.resume,
    )  # fmt: skip
    print(f"run directory: {out}")


if __name__ == "__main__":
    main()
