"""What noise on a feature party's released scores ([scoring] score_noise) costs in AUC, against the ε it buys.

    python scripts/score_noise_utility.py [--data demo breast] [--seeds 3]

For each dataset and seed: a 75/25 split of the joint rows, vfl's algorithm
trained in plaintext on the training rows (the encrypted run equals it to
rounding, tests/protocol/test_exactness.py), then the test rows scored as party
B would get them: u_A from party A's rows clipped to its box and noised with
multiplier z (:class:`vfl.ml.score_noise.ScoreNoise`, a fresh key per seed),
plus B's own part. It prints, per z, the ε per person at δ = 1e-6 (one release,
n = A's feature count) and the test AUC of the joint score and of u_A alone,
averaged over the seeds, beside B alone (no A at all) and the exact scores.
AUC does not depend on calibration, so B's Platt scaling is left out.
``demo`` is the shop/bank data of ``vfl demo`` (10 000 people); ``breast`` is
FATE's, and needs ``../shared/data/fate`` beside the repository.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vfl.data.table import PartyTable, from_dataframe, load_csv  # noqa: E402
from vfl.demo.data import bank_ecommerce  # noqa: E402
from vfl.local.compare import _plain_parts  # noqa: E402
from vfl.ml.config import TrainingConfig  # noqa: E402
from vfl.ml.metrics import auc  # noqa: E402
from vfl.ml.score_noise import ScoreNoise, epsilon, multiplier_for, rho_per_person  # noqa: E402

FATE = ROOT.parent / "shared" / "data" / "fate"
DELTA = 1e-6


def tables(name: str) -> tuple[PartyTable, PartyTable]:
    if name == "demo":
        shop, bank = bank_ecommerce(10_000)
        a = from_dataframe(shop, id_column="customer_id")
        b = from_dataframe(bank, id_column="customer_id", label_column="default", model="logistic")
    else:
        a = load_csv(FATE / f"{name}_hetero_host.csv", id_column="id")
        b = load_csv(FATE / f"{name}_hetero_guest.csv", id_column="id", label_column="y", model="logistic")
    common = [i for i in b.ids if i in set(a.ids)]
    return a.take(a.rows_for(common)), b.take(b.rows_for(common))


def one_split(name: str, a: PartyTable, b: PartyTable, seed: int, multipliers: list[float]) -> dict[str, float]:
    order = np.random.default_rng(seed).permutation(len(a))
    n_test = int(round(len(a) * 0.25))
    test, train = order[:n_test], order[n_test:]
    a_tr, b_tr, a_te, b_te = a.take(train), b.take(train), a.take(test), b.take(test)
    config = TrainingConfig.parse({"model": "logistic", "key_bits": 1024, "seed": seed})
    part_a, part_b = _plain_parts(a_tr, b_tr, config)
    _, alone_b = _plain_parts(a_tr, b_tr, config, use_a=False)
    y = b_te.labels
    u_b = part_b.scores(b_te.features, np.zeros(len(test)))
    exact_a = part_a.partial_scores(a_te.features)
    row = {"b_alone": auc(y, alone_b.scores(b_te.features, np.zeros(len(test)))),
           "exact": auc(y, u_b + exact_a), "exact_a": auc(y, exact_a)}
    key = secrets.token_bytes(32)
    ids = [str(i) for i in a_te.ids]
    for z in multipliers:
        noise = ScoreNoise(key, ("bank", name, z.hex()), z, part_a.feature_box, np.arange(a.features.shape[1]))
        noisy_a = part_a.partial_scores(noise.perturb(ids, a_te.features))
        row[f"joint {z}"], row[f"a {z}"] = auc(y, u_b + noisy_a), auc(y, noisy_a)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["demo", "breast"])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    for name in args.data:
        if name != "demo" and not FATE.is_dir():
            print(f"{name} needs FATE's datasets at {FATE}", file=sys.stderr)
            return 2
        a, b = tables(name)
        n = a.features.shape[1]
        multipliers = [0.01, 0.03, 0.1, 0.3, *(multiplier_for(e, DELTA, n) for e in (16.0, 4.0, 1.0))]
        rows = [one_split(name, a, b, seed, multipliers) for seed in range(args.seeds)]
        mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
        print(f"\n{name}: {len(a)} joint rows, A has {n} features, B {b.features.shape[1]}; test AUC over "
              f"{args.seeds} seeds: B alone {mean['b_alone']:.3f}, exact joint {mean['exact']:.3f}, "
              f"exact u_A alone {mean['exact_a']:.3f}")
        print("| z | ε per person (δ = 1e-6) | AUC joint | AUC u_A alone |")
        print("|---|---|---|---|")
        for z in multipliers:
            eps = epsilon(rho_per_person(n, [z]), DELTA)
            print(f"| {z:.3g} | {eps:.3g} | {mean[f'joint {z}']:.3f} | {mean[f'a {z}']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
