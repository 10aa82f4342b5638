"""agents: PPO and the guided family (PPO++, AggreVaTeD, LOLS, D2LOLS) plus BC, and the
offline algorithms A-LoL (with its baselines) and ReST.

Command lines: ``python -m agents.train``, ``python -m agents.evaluate``,
``python -m agents.export``, ``python -m agents.make_data``, ``python -m agents.demo`` (SmolLM2
learning IMDB-v0: ``make demo``), ``python -m agents.demo_toy`` (the toy tour: ``make demo-toy``).

Map of the package (where to look for what):

* **One iteration** — :mod:`agents.trainer`: ``run`` builds the run, then loops
  plan · collect · score · update · log · checkpoint.
* **Which algorithm does what** — :mod:`agents.algorithms`: the one table, ``--algo`` name →
  config class, ``plan``, ``score``, ``update``, whether it needs a guide or a demonstrator;
  or, for an offline algorithm, its config class and its family's own loop.
* **Who rolls in and who rolls out; the switch point k ~ U{1..L-1}** —
  :mod:`agents.engine`: ``Plan`` (roll-in, roll-out, β, baseline of guided rows) and
  ``collect``, which runs the guide's roll-in (:func:`textgen_env.oracles.roll_in`) and
  roll-out (:func:`textgen_env.oracles.roll_out`) and returns a ``Rollout`` read from the
  env's arrays. Its edge cases (a roll-in that ends the episode) are documented there.
* **Each algorithm's plan and settings** — :mod:`agents.ppo` (PPO, and the ``score`` and
  ``update`` every guided algorithm shares), :mod:`agents.ppo_pp` (guide roll-in),
  :mod:`agents.aggrevated` (guide roll-out, V^g baseline, the λ of its advantage),
  :mod:`agents.lols` (a coin per iteration), :mod:`agents.d2lols` (AggreVaTeD for τ
  iterations, then PPO++), :mod:`agents.bc` (behaviour cloning).
* **Offline algorithms** — :mod:`agents.alol` (A-LoL's four variants, weighted BC, R-LoL and
  plain NLL on a data file: V_ref, advantages, the A ≤ 0 filter, priority sampling) and
  :mod:`agents.rest` (ReST's Grow and Improve steps, ReST-EM); their data files, and how rows
  go through the env, in :mod:`agents.offline_data` (written by :mod:`agents.make_data`); the
  run set-up they share in :mod:`agents.offline_run`.
* **The PPO loss** — :func:`agents.losses.clipped_policy_loss` (and the value loss, entropy
  and log-probs beside it), called from :func:`agents.ppo.update`; the offline algorithms'
  weighted NLL (:func:`agents.losses.weighted_nll_loss`) beside it.
* **The KL penalty** — per token on π's tokens, in :func:`agents.advantages.shaped_rewards`,
  called from :func:`agents.ppo.score`; β_KL fixed or adaptive in :mod:`agents.kl_control`.
* **Advantages** — :func:`agents.advantages.gae`; masked statistics (whitening, explained
  variance) in :mod:`agents.masked`.
* **π** — :mod:`agents.policy` (LM + value head with outputs V^π and V^g, frozen π_ref) and
  :mod:`agents.learner` (π as an actor in the env: KV-cached sampling).
* **Building a run from its config** — :mod:`agents.build` (envs, policy, guide,
  demonstrator); configs in :mod:`agents.config` and each
  algorithm module; presets and the tyro command line in :mod:`agents.cli`.
* **Several processes** — :mod:`agents.distributed`: how a run splits over
  ``accelerate launch`` / ``torchrun`` processes (batch, plan, the offline algorithms' rows,
  DDP gradients, scalars, seeds, checkpoints).
* **Checkpoints** — :mod:`agents.checkpoint`; TensorBoard sample tables —
  :mod:`agents.samples`.
* **Using a trained policy** — :mod:`agents.evaluate` (metrics on a split or a prompt file),
  :mod:`agents.export` (the LM as a Hugging Face model folder); a policy from its checkpoint
  in :mod:`agents.saved_policy`; their command lines' one-line errors and output checks in
  :mod:`agents.cli_errors`.
"""
