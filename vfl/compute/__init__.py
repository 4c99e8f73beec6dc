"""Where a party's big-integer work runs: one small :class:`~vfl.compute.engine.Engine` interface.

Two engines implement it: this machine's process pool (:mod:`~vfl.compute.pool`)
and the party's own Ray cluster; :mod:`~vfl.compute.ray_head` starts a throw-away
local Ray head for tests and benchmarks.
"""
