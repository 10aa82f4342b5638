"""A Markdown table of sample completions (prompt, who wrote which part, reward) for
TensorBoard's text tab: the quickest way to see what a text policy is doing."""

from __future__ import annotations

from agents.engine import Actor, Rollout
from textgen_env.task import TextTask

__all__ = ["samples_table"]

WRITER = {Actor.LEARNER: "π", Actor.GUIDE: "guide"}


def samples_table(task: TextTask, rollout: Rollout, num_rows: int = 8) -> str:
    """The first ``num_rows`` episodes of ``rollout``: prompt, each writer's text, reward.

    A guided row shows the roll-in part (up to the switch point k) and the roll-out part with
    their writers; π's own episodes show one part.
    """
    plan, width = rollout.plan, rollout.prompt_width
    lines = ["| prompt | completion (writer: text) | k | reward |", "|---|---|---|---|"]
    for row in range(min(num_rows, rollout.input_ids.shape[0])):
        length = int(rollout.gen_mask[row].sum())
        tokens = rollout.input_ids[row, width : width + length].tolist()
        k = int(rollout.switch_point[row])
        if k:  # guided: roll-in [0, k) by plan.roll_in, roll-out [k, end) by plan.roll_out
            parts = [(plan.roll_in, tokens[:k]), (plan.roll_out, tokens[k:])]
        else:
            parts = [(Actor.LEARNER, tokens)]
        texts = task.decode([ids for _, ids in parts])
        completion = " ‖ ".join(
            f"**{WRITER[who]}**: {_cell(text)}" for (who, _), text in zip(parts, texts, strict=True)
        )
        prompt = _cell(task.prompts[int(rollout.prompt_index[row])].text)
        reward = float(rollout.task_rewards[row])
        lines.append(f"| {prompt} | {completion} | {k or '—'} | {reward:.3f} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ") or "∅"
