"""Tasks: prompt sets, reward functions and env factories registered by :mod:`textgen_env`."""
