"""``vfl compare``: the federated model against pooled-data baselines and differentially private runs, on one split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("compare", help="federated vs pooled baselines (SVM, random forest, ...) and DP costs")
    p.add_argument("--party-a", required=True, metavar="A.csv")
    p.add_argument("--party-b", required=True, metavar="B.csv")
    p.add_argument("--id-column", required=True)
    p.add_argument("--label-column", default="y")
    p.add_argument("--model", choices=["logistic", "linear"], default="logistic")
    p.add_argument("--name", default=None, help="the dataset's name in the table")
    p.add_argument("--epsilons", default="1,3,10", help="ε values for the DP rows (empty: none)")
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--key-bits", type=int, default=2048,
                   help="Paillier and PSI key size (default 2048, as vfl simulate and the services require); "
                        "metrics do not depend on it, and 1024 runs faster for a quick look")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--loss", choices=["taylor", "exact"], default=None,
                   help="logistic: the federated and same-algorithm rows train on the Taylor loss (default) or the "
                        "exact log-loss (the arbiter then sees each batch's scores, shuffled)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    p.add_argument("--json", type=Path, default=None, help="write the full comparison as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vfl.data.table import load_csv
    from vfl.local.compare import compare, parse_epsilons

    epsilons = parse_epsilons(args.epsilons)  # before the (slow) loading, so a typo fails at once
    table_a = load_csv(args.party_a, id_column=args.id_column)
    table_b = load_csv(args.party_b, id_column=args.id_column, label_column=args.label_column, model=args.model)
    training = {key: value for key, value in (("epochs", args.epochs), ("loss", args.loss)) if value is not None}
    models = 3 + 4 + len(epsilons)  # federated, pooled plaintext, B alone; four scikit-learn models; each ε
    seen = [0]

    def progress(event: str, name: str, row: Any) -> None:
        """One line per model on stderr as it starts and ends: a comparison takes minutes on real data."""
        if event == "start":
            seen[0] += 1
            print(f"compare: [{seen[0]}/{models}] {name} ...", file=sys.stderr, flush=True)
        elif row is not None:
            headline = "auc" if args.model == "logistic" else "r2"
            value = row.metrics.get(headline)
            shown = f"{headline} {value:.4f}, " if isinstance(value, float) else ""
            print(f"compare: [{seen[0]}/{models}] {name}: {shown}{row.seconds:.1f}s", file=sys.stderr, flush=True)

    result = compare(table_a, table_b, model=args.model, dataset=args.name or Path(args.party_b).stem,
                     epsilons=epsilons, test_fraction=args.test_fraction, seed=args.seed, training=training,
                     key_bits=args.key_bits, workers=args.workers, progress=None if args.quiet else progress)
    table = result.markdown()
    print(f"{result.dataset}: {result.train_rows} training rows, {result.test_rows} test rows\n\n{table}")
    if args.out is not None:
        args.out.write_text(table + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_dict(), indent=2))
    return 0
