"""The synthetic federation of `vfl demo --feature-parties K`: who knows whom, and signal on every side."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from vfl.demo.data import bank_partners


def _validation_auc(table, columns):
    features = StandardScaler().fit_transform(table[columns].to_numpy(dtype=float))
    labels = table["default"].to_numpy()
    train = np.arange(len(table)) < 0.7 * len(table)
    model = LogisticRegression().fit(features[train], labels[train])
    return roc_auc_score(labels[~train], model.predict_proba(features[~train])[:, 1])


@pytest.mark.parametrize("k", [2, 3])
def test_every_partner_knows_the_same_bank_customers_and_its_own_others(k):
    partners, bank = bank_partners(k, population=4000, seed=3)

    bank_ids = set(bank["customer_id"])
    known = {name: set(table["customer_id"]) for name, table in partners.items()}

    assert list(partners) == ["shop", "telco", "utility"][:k]
    assert len({frozenset(ids & bank_ids) for ids in known.values()}) == 1  # the same shared customers
    assert len({frozenset(ids - bank_ids) for ids in known.values()}) == k  # each its own outside the bank
    assert 0.1 < bank["default"].mean() < 0.3


def test_each_partner_adds_signal_to_the_bank_and_all_of_them_add_most():
    partners, bank = bank_partners(3, population=20_000, seed=5)
    pooled = bank
    for table in partners.values():
        pooled = pooled.merge(table, on="customer_id")
    bank_columns = [c for c in bank.columns if c not in ("customer_id", "default")]
    own = {name: [c for c in table.columns if c != "customer_id"] for name, table in partners.items()}

    alone = _validation_auc(pooled, bank_columns)
    with_one = {name: _validation_auc(pooled, bank_columns + cols) for name, cols in own.items()}
    with_all = _validation_auc(pooled, bank_columns + [c for cols in own.values() for c in cols])

    assert all(auc > alone + 0.005 for auc in with_one.values()), (alone, with_one)
    assert with_all > max(with_one.values()) + 0.01


def test_more_partners_than_the_federation_has_are_refused_by_name():
    with pytest.raises(ValueError, match="1 to 3 partners"):
        bank_partners(4)
