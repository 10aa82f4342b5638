"""``python -m agents.train --algo ALGO --env-id ID [...]``: train a policy.

Every config field is a flag (``--algo ALGO --help`` lists them with their documentation).
Presets (``--preset paper`` / ``--preset cpu-small``) set several at once; explicit flags win.
"""

from __future__ import annotations

import sys

from agents.build import RunSetupError
from agents.cli import parse_train_args
from agents.trainer import run, run_dir

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Parse the command line (defaults < preset < flags) and run the training loop."""
    argv = sys.argv[1:] if argv is None else argv
    algo, cfg, args = parse_train_args(argv, __doc__.split("\n")[0])
    if args.resume and not (run_dir(cfg, algo) / "checkpoints" / "latest").is_file():
        _fail(f"--resume: no checkpoint in {run_dir(cfg, algo)}")
    try:
        out = run(cfg, algo, init_from=args.init_from, resume=args.resume)
    except RunSetupError as err:
        _fail(str(err))
    print(f"run directory: {out}")


def _fail(message: str) -> None:
    print(f"python -m agents.train: error: {message}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
