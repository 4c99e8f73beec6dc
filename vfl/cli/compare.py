"""``vfl compare``: the federated model against pooled-data baselines and differentially private runs, on one split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    p.add_argument("--json", type=Path, default=None, help="write the full comparison as JSON here")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vfl.data.table import load_csv
    from vfl.local.compare import compare, parse_epsilons

    epsilons = parse_epsilons(args.epsilons)  # before the (slow) loading, so a typo fails at once
    table_a = load_csv(args.party_a, id_column=args.id_column)
    table_b = load_csv(args.party_b, id_column=args.id_column, label_column=args.label_column, model=args.model)
    training = {} if args.epochs is None else {"epochs": args.epochs}
    result = compare(table_a, table_b, model=args.model, dataset=args.name or Path(args.party_b).stem,
                     epsilons=epsilons, test_fraction=args.test_fraction, seed=args.seed, training=training,
                     key_bits=args.key_bits, workers=args.workers)
    table = result.markdown()
    print(f"{result.dataset}: {result.train_rows} training rows, {result.test_rows} test rows\n\n{table}")
    if args.out is not None:
        args.out.write_text(table + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_dict(), indent=2))
    return 0
