"""``python -m agents.train --algo ALGO --env-id ID [...]``: train a policy.

Every config field is a flag (``--algo ALGO --help`` lists them with their documentation).
Presets (``--preset paper`` / ``--preset cpu-small``) set several at once; explicit flags win.
Expected errors (bad settings, a run directory that holds a run, a damaged checkpoint, a
diverged run, a failing guide) end in one line on stderr and exit status 2 (1 for a run that
diverged or whose guide failed); ``--debug`` shows the traceback instead.

Started as several processes (``accelerate launch``, ``torchrun``), only the main process
prints what a run says once (the run directory, a damaged checkpoint's warning); an error is
printed by each process that meets it, naming the process.
"""

from __future__ import annotations

import os
import sys
import warnings

from agents.checkpoint import CheckpointError, DamagedCheckpointWarning
from agents.cli import parse_train_args
from agents.distributed import main_process
from agents.rundir import RunSetupError
from agents.trainer import TrainingDiverged, run
from textgen_env.errors import GuideError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Parse the command line (defaults < preset < flags) and run the training loop."""
    argv = sys.argv[1:] if argv is None else argv
    algo, cfg, args = parse_train_args(argv, __doc__.split("\n")[0])
    main = main_process()
    if not main:  # every process reads the checkpoint; the main one warns
        warnings.filterwarnings("ignore", category=DamagedCheckpointWarning)
    try:
        out = run(cfg, algo, init_from=args.init_from, resume=args.resume, overwrite=args.overwrite)
    except (RunSetupError, CheckpointError, TrainingDiverged, GuideError) as err:
        if args.debug:
            raise
        status = 2 if isinstance(err, RunSetupError | CheckpointError) else 1
        world = os.environ.get("WORLD_SIZE", "1")  # as the launcher said, even if malformed
        where = f" (process {os.environ.get('RANK', '?')} of {world})" if world != "1" else ""
        print(f"python -m agents.train: error{where}: {err}", file=sys.stderr)
        raise SystemExit(status) from None
    if main:
        print(f"run directory: {out}")


if __name__ == "__main__":
    main()
