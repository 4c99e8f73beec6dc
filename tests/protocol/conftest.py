from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tests.conftest import TEST_KEY_BITS
from vfl.ml.config import TrainingConfig
from vfl.protocol.arbiter import Arbiter
from vfl.protocol.channel import InMemoryChannel
from vfl.protocol.feature_party import FeatureParty
from vfl.protocol.label_party import LabelParty
from vfl.protocol.messages import KeyRequest
from vfl.protocol.role import Envelope
from vfl.ml.schedule import gradient_lengths


@dataclass
class Run:
    a: FeatureParty
    b: LabelParty
    c: Arbiter
    channel: InMemoryChannel
    transcript: list[Envelope]


def build_roles(X_a, X_b, y, keypair, **settings) -> tuple[FeatureParty, LabelParty, Arbiter, TrainingConfig]:
    config = TrainingConfig(key_bits=TEST_KEY_BITS, **settings)
    lengths = gradient_lengths(np.shape(X_a)[1], np.shape(X_b)[1], config)
    a = FeatureParty("job", config, X_a, min_key_bits=TEST_KEY_BITS, job_lengths=lengths)
    b = LabelParty("job", config, X_b, y, min_key_bits=TEST_KEY_BITS, job_lengths=lengths)
    c = Arbiter("job", config, len(y), gradient_lengths=lengths, keypair=keypair, min_key_bits=TEST_KEY_BITS)
    return a, b, c, config


def key_request(config: TrainingConfig, party: str, n_params: int, **changes) -> KeyRequest:
    """What a party sends the arbiter first, built from a config (``changes`` override fields)."""
    fields = dict(job_id="job", party=party, n_params=n_params, model=config.model, key_bits=config.key_bits,
                  config_digest=config.digest())
    return KeyRequest(**{**fields, **changes})


@pytest.fixture
def train(keypair):
    """Run the three roles to the end over the in-memory channel."""

    def run(X_a, X_b, y, **settings) -> Run:
        a, b, c, _ = build_roles(X_a, X_b, y, keypair, **settings)
        transcript: list[Envelope] = []
        channel = InMemoryChannel({"A": a, "B": b, "C": c}, transcript=transcript)
        channel.run(a.start() + b.start())
        return Run(a, b, c, channel, transcript)

    return run


@pytest.fixture(scope="session")
def breast():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    return X[:, :10], X[:, 10:], y.astype(float)


@pytest.fixture(scope="session")
def diabetes():
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    return X[:, :4], X[:, 4:], y


@pytest.fixture
def tiny(rng):
    X_a = rng.normal(size=(40, 2))
    X_b = rng.normal(size=(40, 3))
    y = (X_a[:, 0] + X_b[:, 0] + rng.normal(size=40) > 0).astype(float)
    return X_a, X_b, y
