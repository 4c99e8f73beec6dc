"""How far calibration closes the gap to pooled scikit-learn, on FATE's public datasets.

    python scripts/calibration_gap.py [--data breast default_credit] [--seeds 3]

For each dataset and seed: one 75/25 train/test split (as ``vfl compare``),
vfl's algorithm trained on the training rows (in plaintext: the encrypted run
equals it to rounding, tests/protocol/test_exactness.py), Platt scaling fitted
on the training rows as party B fits it, and scikit-learn's pooled logistic
regression. It prints test accuracy and log-loss for each, and the best
accuracy any threshold could reach on the test rows with vfl's scores: no
monotone calibration can beat that, since it keeps the model's ranking.
Needs ``../shared/data/fate`` beside the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vfl.ml.calibration import fit_platt  # noqa: E402
from vfl.local.compare import _plain_parts  # noqa: E402
from vfl.ml.config import TrainingConfig  # noqa: E402
from vfl.data.table import load_csv  # noqa: E402
from vfl.ml.metrics import classification_metrics  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "fate"


def best_accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """The highest accuracy of any cut "p ≥ t" on these rows (an oracle: it looks at the labels)."""
    order = np.argsort(-p, kind="mergesort")
    positives_above = np.r_[0, np.cumsum(y[order] == 1)]
    negatives_below = np.sum(y == 0) - np.r_[0, np.cumsum(y[order] == 0)]
    return float(np.max(positives_above + negatives_below) / len(y))


def one_split(name: str, seed: int) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    a = load_csv(DATA / f"{name}_hetero_host.csv", id_column="id")
    b = load_csv(DATA / f"{name}_hetero_guest.csv", id_column="id", label_column="y", model="logistic")
    common = [i for i in b.ids if i in set(a.ids)]
    a, b = a.take(a.rows_for(common)), b.take(b.rows_for(common))
    order = np.random.default_rng(seed).permutation(len(common))
    n_test = int(round(len(common) * 0.25))
    test, train = order[:n_test], order[n_test:]
    a_tr, b_tr, a_te, b_te = a.take(train), b.take(train), a.take(test), b.take(test)
    part_a, part_b = _plain_parts(a_tr, b_tr, TrainingConfig.parse({"model": "logistic", "key_bits": 1024, "seed": seed}))
    u_tr = part_b.scores(b_tr.features, part_a.partial_scores(a_tr.features))
    u_te = part_b.scores(b_te.features, part_a.partial_scores(a_te.features))
    platt = fit_platt(u_tr, b_tr.labels)
    raw = classification_metrics(b_te.labels, 1 / (1 + np.exp(-u_te)))
    calibrated = classification_metrics(b_te.labels, platt.apply(u_te))
    pooled_tr, pooled_te = np.hstack([a_tr.features, b_tr.features]), np.hstack([a_te.features, b_te.features])
    scaler = StandardScaler().fit(pooled_tr)
    sk = LogisticRegression(max_iter=5000).fit(scaler.transform(pooled_tr), b_tr.labels)
    pooled = classification_metrics(b_te.labels, sk.predict_proba(scaler.transform(pooled_te))[:, 1])
    return {"acc_raw": raw["accuracy"], "acc_platt": calibrated["accuracy"], "acc_sklearn": pooled["accuracy"],
            "acc_best_threshold": best_accuracy(b_te.labels, platt.apply(u_te)),
            "ll_raw": raw["log_loss"], "ll_platt": calibrated["log_loss"], "ll_sklearn": pooled["log_loss"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["breast", "default_credit"])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"needs FATE's datasets at {DATA}", file=sys.stderr)
        return 2
    print("| data | seed | accuracy at 0.5 | Platt | sklearn | best threshold (oracle) | log-loss | Platt | sklearn |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.data:
        for seed in range(args.seeds):
            r = one_split(name, seed)
            print(f"| {name} | {seed} | {r['acc_raw']:.4f} | {r['acc_platt']:.4f} | {r['acc_sklearn']:.4f} | "
                  f"{r['acc_best_threshold']:.4f} | {r['ll_raw']:.4f} | {r['ll_platt']:.4f} | {r['ll_sklearn']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
