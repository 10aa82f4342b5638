"""Command-line plumbing of ``agents.train``: presets, and config ⇄ command line via tyro.

``--algo`` picks the config class from :data:`agents.algorithms.ALGORITHMS`; ``--preset``
sets several fields at once; every config field is a flag whose ``--help`` text is the
field's docstring (tyro reads them). Precedence: defaults < preset < explicit flags.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, NoReturn

import tyro

from agents.algorithms import ALGORITHMS, config_from_dict
from agents.checkpoint import load_checkpoint
from agents.config import TrainConfig
from agents.rundir import run_dir

__all__ = ["PRESETS", "RUN_FLAGS", "OneLineErrors", "parse_train_args", "preset_values"]

# --preset name -> {"all" or an algo name: overrides}; fields a config lacks are ignored.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The paper's IMDB setting: top-k 50, 48 new tokens (env), γ 0.99, λ 0.95, clip 0.2.
    "paper": {
        "all": {"top_k": 50, "gamma": 0.99, "gae_lambda": 0.95, "clip_range": 0.2,
                "vf_coef": 0.5, "learning_rate": 1e-5, "batch_size": 64, "minibatch_size": 16},
    },
    # A meaningful toy-task experiment on 2 CPU cores in minutes (tiny random LM). Batches
    # of 32 at this learning rate collapsed the policy's entropy on Reverse-v0 within ~50
    # iterations (stuck near 0.15); 256 episodes per iteration learn steadily. Without the
    # entropy bonus, AggreVaTeD found Twist-v0's pivot on 1 of seeds 0-2 within 50
    # iterations before π collapsed onto plain praise; with it, on all three.
    "cpu-small": {
        "all": {"batch_size": 256, "minibatch_size": 64, "learning_rate": 1e-3,
                "total_iterations": 50, "update_epochs": 4, "kl_coef": 0.0, "ent_coef": 0.05,
                "top_k": 0, "checkpoint_every": 10},
        # ReST counts Improve steps: 2 Grow steps of the default 4 thresholds.
        "rest": {"total_iterations": 8},
    },
}  # fmt: skip

RUN_FLAGS = """\
run flags (before the config flags):
  --algo {%s}  algorithm to run (required)
  --preset {%s}  a set of defaults; explicit flags win
  --init-from PATH  checkpoint or run dir whose policy starts training and becomes π_ref (BC+X)
  --resume  continue the run in --output-dir: its saved config is the default, and only
            total_iterations, checkpoint_every, log_samples_every, output_dir, device and
            the served guide's address, timeout, retries, concurrency and cache may change
  --overwrite  replace the run that --output-dir holds (otherwise a new run refuses it)
  --debug  show the traceback of an error instead of one line"""


class OneLineErrors(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message`` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def preset_values(preset: str | None, algo: str) -> dict[str, Any]:
    """The overrides preset ``preset`` makes for ``algo``'s config."""
    if preset is None:
        return {}
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    names = {f.name for f in dataclasses.fields(ALGORITHMS[algo].config)}
    values = PRESETS[preset].get("all", {}) | PRESETS[preset].get(algo, {})
    return {k: v for k, v in values.items() if k in names}


def parse_train_args(
    argv: list[str], description: str
) -> tuple[str, TrainConfig, argparse.Namespace]:
    """``(algo, config, run flags)`` from the command line; exits 2 with one clear line on
    a bad flag or value, 0 after ``--help``."""
    run_flags = OneLineErrors(
        prog="python -m agents.train", description=description, add_help=False
    )
    run_flags.add_argument("--algo", choices=sorted(ALGORITHMS))
    run_flags.add_argument("--preset", choices=sorted(PRESETS))
    run_flags.add_argument("--init-from")
    run_flags.add_argument("--resume", action="store_true")
    run_flags.add_argument("--overwrite", action="store_true")
    run_flags.add_argument("--debug", action="store_true")
    args, rest = run_flags.parse_known_args(argv)
    if args.resume and args.overwrite:
        run_flags.error("--resume and --overwrite exclude each other")
    wants_help = "-h" in rest or "--help" in rest
    if args.algo is None:
        if wants_help:
            print(description + "\n" + _run_flags_text())
            raise SystemExit(0)
        run_flags.error("the following arguments are required: --algo")
    cls = ALGORITHMS[args.algo].config
    try:
        default = cls(**preset_values(args.preset, args.algo))
        cfg = _parse(cls, rest, default, args.algo, description)
        if args.resume:  # the run's own config is the default; flags change it
            saved = load_checkpoint(run_dir(cfg, args.algo), trainer=False)[2]
            if saved["algo"] != args.algo:
                raise ValueError(
                    f"--resume: the run in {run_dir(cfg, args.algo)} is {saved['algo']}, "
                    f"not {args.algo}"
                )
            cfg = _parse(cls, rest, config_from_dict(saved), args.algo, description)
    except (TypeError, ValueError, FileNotFoundError) as err:  # ValueError: CheckpointError too
        run_flags.error(str(err))
    return args.algo, cfg, args


def _parse(
    cls: type[TrainConfig], rest: list[str], default: TrainConfig, algo: str, description: str
) -> TrainConfig:
    return tyro.cli(
        cls,
        args=rest,
        default=default,
        prog=f"python -m agents.train --algo {algo}",
        description=f"{description}\n\n{_run_flags_text()}",
    )


def _run_flags_text() -> str:
    return RUN_FLAGS % ("|".join(sorted(ALGORITHMS)), "|".join(sorted(PRESETS)))
