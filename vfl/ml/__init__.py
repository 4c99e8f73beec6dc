"""The learning algorithm without crypto or I/O: configs, model math, optimisers, scaling, metrics.

Everything here is plain numpy on one party's own numbers: the training config
(:mod:`~vfl.ml.config`), what differs between logistic and linear regression
(:mod:`~vfl.ml.kinds`), the optimisers, the batch schedule and the convergence
rules every party applies alike, standardisation, differential privacy, the
trained model parts, calibration, metrics and the curves party B keeps. The
plaintext trainer (:mod:`~vfl.ml.plaintext`) is the yardstick the encrypted
protocol must match.
"""
