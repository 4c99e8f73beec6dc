"""Shared fixtures: one 1024-bit key for the whole session, and small datasets.

Tests use 1024-bit keys for speed (real use defaults to 2048). FATE's example
datasets live in ../shared/data/fate beside the clone; tests that need them
skip with a reason when that folder is absent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from vfl.crypto.keys import PrivateKey, PublicKey, generate_keypair

TEST_KEY_BITS = 1024
FATE_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fate"


@pytest.fixture(scope="session")
def keypair() -> tuple[PublicKey, PrivateKey]:
    return generate_keypair(TEST_KEY_BITS, min_bits=TEST_KEY_BITS)


@pytest.fixture(scope="session")
def public_key(keypair: tuple[PublicKey, PrivateKey]) -> PublicKey:
    return keypair[0]


@pytest.fixture(scope="session")
def private_key(keypair: tuple[PublicKey, PrivateKey]) -> PrivateKey:
    return keypair[1]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def fate_pair(name: str) -> tuple[Path, Path]:
    """Paths of FATE's <name>_hetero_host.csv (party A) and _guest.csv (party B), or skip."""
    return fate_files(f"{name}_hetero_host.csv", f"{name}_hetero_guest.csv")


def fate_files(*names: str) -> tuple[Path, ...]:
    """Paths of FATE example files under ../shared/data/fate, or skip the test when one is absent."""
    paths = tuple(FATE_DATA / name for name in names)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"FATE data {missing} not found under {FATE_DATA} (../shared is absent)")
    return paths


def pooled_ionosphere_auc() -> float:
    """scikit-learn's LogisticRegression on FATE's ionosphere, pooled and mean-imputed: training AUC (0.9610)."""
    import numpy as np
    import pandas as pd
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    host, guest = fate_pair("ionosphere_scale")
    raw_a, raw_b = pd.read_csv(host).set_index("sid"), pd.read_csv(guest).set_index("sid")
    X = np.hstack([raw_b.drop(columns="label").to_numpy(float), raw_a.loc[raw_b.index].to_numpy(float)])
    X = StandardScaler().fit_transform(SimpleImputer(keep_empty_features=True).fit_transform(X))
    y = raw_b["label"].to_numpy(float)
    return float(roc_auc_score(y, LogisticRegression(max_iter=5000).fit(X, y).decision_function(X)))


# -- tiers ----------------------------------------------------------------------------------------

#: The tier folders, cheapest first. Each test gets the marker of the folder it lives in, so that
#: `-m` selects tiers: `make test` runs unit, protocol, service and cluster; `make test-system` runs
#: system plus every test marked `slow`.
TIERS = ("unit", "protocol", "service", "cluster", "system")
#: The per-test limit for tests/system and `slow` tests (pyproject's `timeout` is for the rest).
LONG_TIMEOUT = 600


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    outside = set()
    for item in items:
        try:
            tier = item.path.relative_to(here).parts[0]
        except ValueError:  # a test outside tests/ (say, given on the command line)
            continue
        if tier not in TIERS:
            outside.add(str(item.path.relative_to(here.parent)))
            continue
        item.add_marker(getattr(pytest.mark, tier))
        if (tier == "system" or item.get_closest_marker("slow")) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(LONG_TIMEOUT))
    if outside:
        raise pytest.UsageError(f"tests must live in one of the tier folders tests/{{{','.join(TIERS)}}}/: "
                                f"{', '.join(sorted(outside))}")


@pytest.fixture
def run():
    """Run a coroutine to completion (the service tests are plain functions)."""
    return asyncio.run
