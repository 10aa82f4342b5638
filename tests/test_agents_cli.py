"""``python -m agents.train``: every algorithm, --help, bad flags, presets, --resume."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from agents.algorithms import ALGORITHMS, OfflineAlgorithm
from agents.checkpoint import latest_checkpoint, load_checkpoint
from agents.cli import PRESETS
from agents.train import main

REPO = Path(__file__).resolve().parents[1]
TINY = ["--batch-size", "4", "--top-k", "0", "--learning-rate", "1e-3"]
ONLINE = sorted(k for k, v in ALGORITHMS.items() if not isinstance(v, OfflineAlgorithm))
OFFLINE_TINY = {  # A-LoL's family trains on the toy task's references
    "alol": ["--value-steps", "5", "--value-samples", "1"],
    "rest": ["--thresholds", "50", "--minibatch-size", "4", "--max-prompts", "4"],
}


def tiny_flags(algo: str, out: Path, iterations: int = 1) -> list[str]:
    flags = ["--algo", algo, "--output-dir", str(out), "--total-iterations", str(iterations)]
    if isinstance(ALGORITHMS[algo], OfflineAlgorithm):
        return flags + TINY + OFFLINE_TINY.get(algo, OFFLINE_TINY["alol"])
    flags += [*TINY, "--minibatch-size", "2"]
    if algo != "bc":
        flags += ["--update-epochs", "1"]
    return flags + {"lols": ["--tau", "0.5"], "d2lols": ["--tau", "1"]}.get(algo, [])


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings of a dataclass's fields (the string literal right below each field)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body  # type: ignore[attr-defined]
        for node, nxt in itertools.pairwise(body):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
                docs[node.target.id] = " ".join(nxt.value.value.split())  # type: ignore[attr-defined]
    return docs


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_algo_runs(algo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    iterations = 2 if algo == "d2lols" else 1  # d2lols: one AggreVaTeD, one PPO++ iteration
    main(tiny_flags(algo, tmp_path, iterations=iterations))
    assert f"run directory: {tmp_path}" in capsys.readouterr().out
    _, state, config = load_checkpoint(tmp_path)
    assert config["algo"] == algo and state["iterations_done"] == iterations
    assert config["batch_size"] == 4 and config["learning_rate"] == 1e-3
    assert (tmp_path / "tb").is_dir()


def test_bc_with_guide_demonstrations(tmp_path: Path) -> None:
    main([*tiny_flags("bc", tmp_path), "--demonstrations", "guide", "--guide-epsilon", "0"])
    assert load_checkpoint(tmp_path)[2]["demonstrations"] == "guide"


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_help_documents_every_field(algo: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--algo", algo, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    # tyro re-wraps the text inside a box: compare without whitespace and box borders
    squashed = "".join(out.replace("│", " ").split())
    cls = ALGORITHMS[algo].config
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        assert "--" + f.name.replace("_", "-") in out, f.name
        assert docs.get(f.name), f"field {f.name} of {cls.__name__} has no docstring"
        assert "".join(docs[f.name].split()) in squashed, f.name
    for flag in ("--preset", "--resume", "--init-from"):
        assert flag in out


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--algo", "nope"], "invalid choice: 'nope'"),
        ([], "--algo"),
        (["--algo", "ppo", "--batch-size", "four"], "Error parsing --batch-size"),
        (["--algo", "ppo", "--kl-coef", "x"], "Error parsing --kl-coef"),
        (["--algo", "ppo", "--separate-critic", "maybe"], "Unrecognized options: maybe"),
        (["--algo", "ppo", "--preset", "huge"], "invalid choice: 'huge'"),
        (["--algo", "ppo", "--no-such-flag", "1"], "Unrecognized options: --no-such-flag"),
        (["--algo", "ppo_pp", "--beta", "1.5"], "beta must be in [0, 1], got 1.5"),
        (["--algo", "d2lols", "--tau", "0.5"], "Error parsing --tau"),
        (["--algo", "lols", "--tau", "2"], "tau must be in [0, 1]"),
        (["--algo", "ppo", "--batch-size", "8", "--minibatch-size", "3"], "must divide"),
        (["--algo", "ppo", "--env-id", "CartPole-v1"], "env_id must be a textgen_env/ id"),
        (["--algo", "ppo", "--learning-rate", "-1"], "learning_rate must be > 0"),
        (["--algo", "ppo", "--beta", "0.5"], "Unrecognized options: --beta"),
        (["--algo", "ppo", "--adaptive-kl-target", "0.1", "--kl-coef", "0"], "needs kl_coef > 0"),
        (["--algo", "bc", "--demonstrations", "teacher"], "demonstrations must be"),
    ],
)
def test_bad_flags_are_clean_errors(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert problem in " ".join(err.replace("│", " ").split())
    assert "Traceback" not in err


def preset_for(name: str, algo: str) -> dict[str, object]:
    """What preset ``name`` should set for ``algo``: its "all" and per-algorithm entries,
    less the fields the algorithm's config lacks."""
    values = {**PRESETS[name].get("all", {}), **PRESETS[name].get(algo, {})}
    names = {f.name for f in dataclasses.fields(ALGORITHMS[algo].config)}
    return {k: v for k, v in values.items() if k in names}


def test_bool_flags(tmp_path: Path) -> None:
    main([*tiny_flags("ppo", tmp_path), "--separate-critic"])
    assert load_checkpoint(tmp_path)[2]["separate_critic"] is True


@pytest.mark.parametrize("algo", ONLINE)
def test_preset_applies_and_flags_override(algo: str, tmp_path: Path) -> None:
    preset = preset_for("cpu-small", algo)
    assert preset.get("learning_rate") == 1e-3
    flags = tiny_flags(algo, tmp_path)
    flags = flags[: flags.index("--batch-size")]  # keep --algo, --output-dir, --total-iterations
    main([*flags, "--preset", "cpu-small", "--batch-size", "4", "--minibatch-size", "2"])
    config = load_checkpoint(tmp_path)[2]
    explicit = {"output_dir": str(tmp_path), "total_iterations": 1, "batch_size": 4}
    explicit["minibatch_size"] = 2
    default = ALGORITHMS[algo].config()
    for f in dataclasses.fields(default):  # flag > preset > default
        want = explicit.get(f.name, preset.get(f.name, getattr(default, f.name)))
        assert config[f.name] == want, f.name


def test_preset_per_algo_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """An algorithm's own entry beats the preset's "all" entry and applies to that algorithm
    only; fields a config lacks are dropped."""
    import agents.cli as cli

    presets = {"p": {"all": {"learning_rate": 0.5, "tau": 0.3, "no_such_field": 1},
                     "d2lols": {"tau": 7}}}  # fmt: skip
    monkeypatch.setattr(cli, "PRESETS", presets)
    assert cli.preset_values("p", "d2lols") == {"learning_rate": 0.5, "tau": 7}
    assert cli.preset_values("p", "lols") == {"learning_rate": 0.5, "tau": 0.3}
    assert cli.preset_values("p", "ppo") == {"learning_rate": 0.5}


def test_preset_and_flags_are_validated_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flag that is invalid with the preset's values is a clean error, not a crash."""
    flags = ["--algo", "ppo", "--preset", "cpu-small", "--output-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        main([*flags, "--minibatch-size", "5"])  # 5 does not divide the preset's 256
    assert exc.value.code == 2
    assert "minibatch_size 5 must divide batch_size 256" in capsys.readouterr().err


def test_resume_from_the_cli(tmp_path: Path) -> None:
    a, b, every = tmp_path / "a", tmp_path / "b", ["--checkpoint-every", "1"]
    main([*tiny_flags("ppo_pp", a, iterations=2), *every])  # 2 straight iterations
    main([*tiny_flags("ppo_pp", b, iterations=1), *every])  # 1 iteration, then resume to 2
    assert latest_checkpoint(b).name == "iter-000001"
    main([*tiny_flags("ppo_pp", b, iterations=2), *every, "--resume"])
    assert latest_checkpoint(b).name == "iter-000002"
    assert same_weights(load_checkpoint(a)[0], load_checkpoint(b)[0])


def test_resume_without_checkpoint_fails(tmp_path: Path) -> None:
    with pytest.raises((FileNotFoundError, SystemExit)):
        main([*tiny_flags("ppo", tmp_path / "empty"), "--resume"])


def test_subprocess_run(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "agents.train", *tiny_flags("ppo_pp", tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"run directory: {tmp_path / 'run'}" in done.stdout
    assert latest_checkpoint(tmp_path / "run").name == "iter-000001"


def test_bc_without_references_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #8: BC on a task without references names the way out, before any training."""
    argv = ["--algo", "bc", "--env-id", "textgen_env/Positive-v0", "--output-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "has no reference texts" in err and "--demonstrations guide" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "checkpoints").exists()


def test_help_without_algo_lists_the_run_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ALGORITHMS) and "--preset" in out


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], status: int = 2) -> str:
    """Run the CLI expecting an error: the exit status and the one line it printed."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "it/s" not in line and line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue #13: each expected error is one clear line and a non-zero exit."""
    base = tiny_flags("ppo", tmp_path / "run")
    line = one_line_error([*base, "--env-id", "textgen_env/Nope-v0"], capsys)
    assert "unknown env id 'textgen_env/Nope-v0'; registered: textgen_env/" in line
    line = one_line_error([*base, "--init-from", str(tmp_path / "missing")], capsys)
    assert f"--init-from {tmp_path / 'missing'}: no checkpoint found" in line
    garbage = tmp_path / "garbage" / "checkpoints" / "iter-000001"
    garbage.mkdir(parents=True)
    (garbage / "config.json").write_text("{}")
    line = one_line_error([*base, "--init-from", str(tmp_path / "garbage")], capsys)
    assert "no intact checkpoint" in line and "not a run config" in line
    (tmp_path / "afile").write_text("x")
    line = one_line_error([*tiny_flags("ppo", tmp_path / "afile")], capsys)
    assert "is a file" in line
    if not torch.cuda.is_available():
        line = one_line_error([*base, "--device", "cuda"], capsys)
        assert "no CUDA device is available" in line
    line = one_line_error([*base, "--device", "toaster"], capsys)
    assert "device 'toaster'" in line


def test_a_bad_prepack_switch_is_one_line_before_any_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEXTGEN_ENV_PREPACK", "yes")
    line = one_line_error(tiny_flags("ppo", tmp_path / "run"), capsys)
    assert "TEXTGEN_ENV_PREPACK must be 0 or 1, got 'yes'" in line
    assert not (tmp_path / "run").exists()


def test_cli_init_from_another_model_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(tiny_flags("ppo", tmp_path / "donor"))  # a Reverse-v0 policy (11-token vocabulary)
    flags = [*tiny_flags("ppo", tmp_path / "run"), "--env-id", "textgen_env/Positive-v0"]
    line = one_line_error([*flags, "--init-from", str(tmp_path / "donor")], capsys)
    assert f"--init-from {tmp_path / 'donor'} does not fit this policy" in line


def test_cli_refuses_to_overwrite_and_resume_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    main(tiny_flags("ppo", out))
    line = one_line_error(tiny_flags("ppo", out), capsys)
    assert "already holds a run; pass --resume to continue it, --overwrite" in line
    line = one_line_error(
        [*tiny_flags("ppo", out, iterations=2), "--resume", "--seed", "7"], capsys
    )
    assert "--resume would change what the run is (seed: 0 in the run, 7 now)" in line
    line = one_line_error([*tiny_flags("ppo_pp", out, iterations=2), "--resume"], capsys)
    assert "the run in" in line and "is ppo, not ppo_pp" in line
    # --resume with no other flag continues the run with its own settings
    main(["--algo", "ppo", "--output-dir", str(out), "--resume", "--total-iterations", "2"])
    assert load_checkpoint(out)[2]["resumed"][0]["changed"] == {"total_iterations": [1, 2]}
    main([*tiny_flags("ppo", out), "--overwrite", "--seed", "3"])
    assert load_checkpoint(out)[2]["seed"] == 3 and "resumed" not in load_checkpoint(out)[2]


def test_cli_divergence_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [*tiny_flags("ppo", tmp_path / "run", iterations=3), "--learning-rate", "1e12"]
    line = one_line_error(flags, capsys, status=1)
    assert "training diverged at iteration 0" in line
    from agents.trainer import TrainingDiverged

    with pytest.raises(TrainingDiverged):
        main([*flags, "--overwrite", "--debug"])


API = ["--algo", "d2lols", "--env-id", "textgen_env/IMDB-v0"]
SERVED = [*API, "--guide-api-base", "http://127.0.0.1:8000/v1", "--guide-api-model", "m"]


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        ([*API, "--guide-api-base", "http://127.0.0.1:8000/v1"], "go together: set both"),
        ([*API, "--guide-api-model", "m"], "guide_api_base and guide_api_model go together"),
        (
            [*API, "--guide-api-base", "127.0.0.1:8000", "--guide-api-model", "m"],
            "guide_api_base must be an http:// or https:// URL",
        ),
        ([*SERVED, "--guide-api-endpoint", "responses"], "invalid choice 'responses'"),
        ([*SERVED, "--guide-api-prompt-template", "Continue:"], "must contain {prompt}"),
        ([*SERVED, "--guide-api-extra-body", "[1]"], "must be a JSON object, got '[1]'"),
        ([*SERVED, "--guide-api-extra-body", "{oops"], "guide_api_extra_body is not JSON"),
        ([*SERVED, "--guide-api-concurrency", "0"], "guide_api_concurrency must be > 0"),
        ([*SERVED, "--guide-api-top-p", "1.5"], "guide_api_top_p must be in (0, 1]"),
        ([*SERVED, "--guide-api-max-retries", "-1"], "guide_api_max_retries must be >= 0"),
        ([*SERVED, "--guide-api-key", "sk-x"], "Unrecognized options: --guide-api-key"),
    ],
)
def test_guide_api_flags_are_checked(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The served guide's flags are validated with the config (the key has no flag: it
    comes from OPENAI_API_KEY only)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert problem in " ".join(err.replace("│", " ").split())
    assert "Traceback" not in err
