"""A whole job in one process: :mod:`~vfl.local.simulate` (every role, real encryption, an in-memory
channel) and :mod:`~vfl.local.compare` (federated against pooled baselines)."""
