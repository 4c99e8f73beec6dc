"""Where a party's big-integer work runs: one small :class:`~vfl.compute.engine.Engine` interface.

Two engines implement it: this machine's process pool (:mod:`~vfl.compute.pool`)
and the party's own Ray cluster; :mod:`~vfl.compute.ray_head` starts a private
local Ray head (loopback, a token of its own, a 0700 folder) for tests, benchmarks
and a service without a cluster address. :mod:`~vfl.compute.childproc` makes child
processes end with the process that started them.
"""
