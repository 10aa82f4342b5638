"""agents: PPO and the guided family (PPO++, AggreVaTeD, LOLS, D2LOLS) plus BC.

One module per algorithm (:mod:`agents.ppo`, :mod:`agents.ppo_pp`, :mod:`agents.aggrevated`,
:mod:`agents.lols`, :mod:`agents.d2lols`, :mod:`agents.bc`) on the shared roll-in/roll-out
engine (:mod:`agents.engine`) and training loop (:mod:`agents.trainer`). Command lines:
``python -m agents.train``, ``python -m agents.evaluate``, ``python -m agents.demo``.
"""
