"""Where a training iteration's time goes, operator by operator: :func:`iteration_profile`.

Runs the public CLI (``python -m agents.train``, the job of ``benchmarks/perf.py``'s rows) in
a subprocess and records its third iteration with torch's profiler: the roll-out (the
trainer's ``collect``) as one phase, scoring and update (from the end of that roll-out to the
start of the next) as the other. Each phase lists the operators with the most self CPU time
and counts its autograd (``*Backward*``) operator calls.
perf.md shows it beside the rows whose targets are missed (issue #9: "if a target is missed,
the report says by how much and what the profile shows"). The profiler adds its own overhead
per operator call, so its seconds run a little above the unprofiled iteration's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "OP_PROFILE"
TOP = 8

# Runs inside the CLI's process: profiles the roll-out of iteration 3 (the third call of
# agents.trainer.collect), then everything up to the next roll-out (scoring and update).
_CODE = f"""
import json, runpy, sys
import torch
import agents.trainer as trainer

real, calls, state = trainer.collect, [0], {{}}

def top(prof):
    rows = [(e.key, e.self_cpu_time_total / 1e6, e.count) for e in prof.key_averages()]
    rows.sort(key=lambda r: -r[1])
    total = sum(r[1] for r in rows)
    backward = sum(n for k, _, n in rows if "Backward" in k)
    return {{"self_seconds": total, "backward_calls": backward, "ops": [
        {{"op": k, "seconds": s, "calls": n}} for k, s, n in rows[:{TOP}]]}}

def collect(*args, **kwargs):
    calls[0] += 1
    if "open" in state:  # the scoring and update since the profiled roll-out
        prof = state.pop("open")
        prof.__exit__(None, None, None)
        state["update"] = top(prof)
        print("{MARK}", json.dumps(state), file=sys.stderr, flush=True)
    if calls[0] != 3:
        return real(*args, **kwargs)
    with torch.profiler.profile() as prof:
        out = real(*args, **kwargs)
    state["generation"] = top(prof)
    state["open"] = torch.profiler.profile()
    state["open"].__enter__()
    return out

trainer.collect = collect
sys.argv = ["agents.train"] + sys.argv[1:]
runpy.run_module("agents.train", run_name="__main__")
"""


def iteration_profile(flags: list[str]) -> dict:
    """Top operators by self CPU time of iteration 3 of ``agents.train`` run with ``flags``:
    ``{"generation": {"self_seconds", "backward_calls", "ops": [{"op", "seconds", "calls"}]},
    "update": ...}``,
    or ``{"error": ...}`` when the run fails."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", _CODE, *flags, "--total-iterations", "4",
               "--checkpoint-every", "1000", "--output-dir", f"{tmp}/run"]  # fmt: skip
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in done.stderr.splitlines() if line.startswith(MARK)]
    if done.returncode or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {done.returncode}: {tail[0][:300]}"}
    return json.loads(lines[-1][len(MARK) :])


# The operators that multiply by the weights (the passes' FLOPs: what the bounds count).
MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "mkldnn::_linear_pointwise")


def matmul_share(phase: dict) -> str:
    """One phrase: the seconds of the matrix products among a phase's top operators, and the
    largest other operator."""
    matmul = sum(o["seconds"] for o in phase["ops"] if o["op"] in MATMUL_OPS)
    others = [o for o in phase["ops"] if o["op"] not in MATMUL_OPS]
    share = f"matrix products {matmul:.2f} of {phase['self_seconds']:.2f} s"
    if others:
        share += f", next `{others[0]['op']}` {others[0]['seconds']:.2f} s"
    return share


def profile_markdown(profiles: dict[str, dict]) -> list[str]:
    """perf.md's section: one table per profiled row, both phases side by side."""
    out = [
        "## Where the time goes (torch profiler, iteration 3 of the row's run)",
        "",
        "Operators with the most self CPU time in the roll-out and in scoring + update "
        f"(top {TOP} of each; the profiler's overhead included).",
    ]
    for row, prof in profiles.items():
        out += ["", f"**{row}**", ""]
        if "error" in prof:
            out.append(f"not profiled: {prof['error']}")
            continue
        out.append(
            f"Generation: {matmul_share(prof['generation'])}; "
            f"scoring + update: {matmul_share(prof['update'])}."
        )
        out += ["", "| phase | operator | seconds | calls |", "| --- | --- | --- | --- |"]
        for phase in ("generation", "update"):
            p = prof[phase]
            out.append(f"| {phase} (all operators) | | {p['self_seconds']:.2f} | |")
            out += [
                f"| {phase} | `{o['op']}` | {o['seconds']:.2f} | {o['calls']} |" for o in p["ops"]
            ]
    return out
