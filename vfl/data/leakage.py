"""Label leakage: a feature that is, or nearly is, the label.

A feature party that still holds the label column (or a copy of it) trains to
an AUC of 1.0, and the model is worthless on new rows. Two checks:

* :func:`column_leaks`, where one place holds both a party's columns and the
  labels (``vfl simulate``: every file is local). A column named like the label,
  or whose values equal the label, or that alone separates the classes
  (AUC ≥ 0.99 or ≤ 0.01) on the training rows.
* :func:`score_leak`, at party B of a service, which never sees a feature
  party's columns: B does receive each feature party's plaintext partial score
  for the aligned rows (the job's evaluation), so B can tell when one party's
  score alone separates the classes almost perfectly.
"""

from __future__ import annotations

import re

import numpy as np

from vfl.ml.metrics import auc

#: A party's column or partial score separating the classes this well is a leak, or a column to check.
LEAK_AUC = 0.99
#: Fewer rows of either class than this, and an AUC says nothing: a few rows are separable by chance.
MIN_CLASS_ROWS = 10
#: Column names that usually hold a label.
LABEL_LIKE = frozenset({"label", "target", "y", "class", "default", "outcome"})


def _plain(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def column_leaks(names: list[str], features: np.ndarray, labels: np.ndarray, label_name: str | None,
                 source: str, binary: bool = True) -> list[str]:
    """Warnings for columns of ``features`` (aligned to ``labels``) that give the label away."""
    warnings: list[str] = []
    labels = np.asarray(labels, dtype=np.float64)
    wanted = {_plain(label_name)} if label_name else set()
    for j, name in enumerate(names):
        column = np.asarray(features[:, j], dtype=np.float64)
        finite = np.isfinite(column)
        if _plain(name) in wanted or (_plain(name) in LABEL_LIKE and _plain(name) != ""):
            warnings.append(f"{source}: column {name!r} is named like the label; a feature party must not hold the "
                            "label: drop the column from that file")
            continue
        if finite.sum() < 2:
            continue
        if np.array_equal(column[finite], labels[finite]):
            warnings.append(f"{source}: column {name!r} equals the label on every row; it is the label: drop it")
            continue
        if binary and _enough(labels[finite]):
            value = auc(labels[finite], column[finite])
            if value is not None and (value >= LEAK_AUC or value <= 1 - LEAK_AUC):
                warnings.append(f"{source}: column {name!r} alone separates the classes (AUC {max(value, 1 - value):.4f}"
                                "); it may be the label or derived from it (label leakage): check it, drop it if so")
        elif not binary and np.std(column[finite]) > 0 and np.std(labels[finite]) > 0:
            r = float(np.corrcoef(column[finite], labels[finite])[0, 1])
            if abs(r) >= LEAK_AUC:
                warnings.append(f"{source}: column {name!r} correlates with the label at r = {r:.4f}; it may be the "
                                "label or derived from it (label leakage): check it, drop it if so")
    return warnings


def label_like_columns(names: list[str]) -> list[str]:
    """A feature party's own columns named like a label (it does not know B's label's name): to check, not proof."""
    return [n for n in names if _plain(n) in LABEL_LIKE]


def score_leak(party: str, partial_scores: np.ndarray, labels: np.ndarray, split: str) -> str | None:
    """A warning when one feature party's partial score alone separates the classes (AUC ≥ 0.99) on ``split``."""
    labels = np.asarray(labels, dtype=np.float64)
    if not _enough(labels):
        return None
    value = auc(labels, np.asarray(partial_scores, dtype=np.float64))
    if value is None or value < LEAK_AUC:
        return None
    return (f"party {party}'s part of the model alone separates the classes on the {split} rows (AUC {value:.4f}): "
            f"{party}'s data may hold the label or a copy of it (label leakage). Ask {party} to check its columns "
            "for the label or anything computed from it")


def _enough(labels: np.ndarray) -> bool:
    """Two classes, each on at least :data:`MIN_CLASS_ROWS` rows."""
    values, counts = np.unique(labels, return_counts=True)
    return len(values) == 2 and int(counts.min()) >= MIN_CLASS_ROWS


def perfect_model(metrics: dict[str, dict[str, object]]) -> str | None:
    """A warning when the validation (or training) AUC is 1.0: real credit data is never separable."""
    for split in ("validation", "train"):
        value = (metrics.get(split) or {}).get("auc")
        if isinstance(value, float):
            if value >= 0.9999:
                return (f"the {split} AUC is {value:.4f}: the classes are separated perfectly, which real data "
                        "almost never allows; check every party's columns for the label or a copy of it")
            return None
    return None


__all__ = ["LEAK_AUC", "column_leaks", "perfect_model", "score_leak"]
