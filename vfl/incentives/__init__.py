"""What each data owner adds, and a record of it no single party can change.

* :mod:`~vfl.incentives.shapley`: Shapley values (exact, or by permutation sampling) and leave-one-out
  from the values of coalitions of feature parties;
* :mod:`~vfl.incentives.chain`: the co-signed, hash-chained job ledger (entries, signatures, checks).
"""
