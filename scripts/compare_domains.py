"""Federated against pooled baselines in three domains, with the figures the papers ask for.

    python scripts/compare_domains.py [--shared ../shared] [--out docs/compare] [--key-bits 1024]

Domains (as in the first seed paper's Figure 2, one loss curve each):

* healthcare: FATE's ``breast`` pair (party A = host, party B = guest, label ``y``);
* finance: FATE's ``default_credit`` pair;
* user data: the demo's bank + e-commerce tables (``vfl.demo.data.bank_ecommerce``).

For each it runs :func:`vfl.local.compare.compare` (one train/test split; federated,
pooled plaintext, B alone, scikit-learn LR/SVM/RF/DT, DP at ε 1, 3, 10) and
writes into ``--out``:

* ``<domain>.md`` and ``<domain>.json``: the table and the full comparison;
* ``loss_by_domain.png``: the federated training loss per epoch, one curve per domain;
* ``parameters_<domain>.png``: each party's weights after every epoch;
* ``roc_<domain>.png``: the federated model's ROC on the test rows, against B alone.

The FATE domains are skipped, with a message, when ``../shared`` is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from vfl.local.compare import Comparison, compare, parse_epsilons
from vfl.data.table import PartyTable, load_csv
from vfl.demo.data import bank_ecommerce
from vfl.report import plots


def _fate_pair(shared: Path, name: str) -> tuple[PartyTable, PartyTable] | None:
    folder = shared / "data" / "fate"
    host, guest = folder / f"{name}_hetero_host.csv", folder / f"{name}_hetero_guest.csv"
    if not (host.exists() and guest.exists()):
        print(f"skipping {name}: {folder} has no {host.name} / {guest.name}", file=sys.stderr)
        return None
    return load_csv(host, id_column="id"), load_csv(guest, id_column="id", label_column="y", model="logistic")


def _demo_pair(workdir: Path) -> tuple[PartyTable, PartyTable]:
    shop, bank = bank_ecommerce()
    shop_csv, bank_csv = workdir / "shop.csv", workdir / "bank.csv"
    shop.to_csv(shop_csv, index=False)
    bank.to_csv(bank_csv, index=False)
    return (load_csv(shop_csv, id_column="customer_id"),
            load_csv(bank_csv, id_column="customer_id", label_column="default", model="logistic"))


def _write(out: Path, domain: str, result: Comparison, command: str) -> None:
    (out / f"{domain}.json").write_text(json.dumps(result.to_dict(), indent=2))
    (out / f"{domain}.md").write_text(
        f"**{domain}** ({result.dataset}): {result.train_rows} training rows, {result.test_rows} test rows. "
        f"Made by `{command}`.\n\n{result.markdown()}\n"
    )
    params = {party: (p["names"], p["history"]) for party, p in result.parameters.items() if p["history"]}
    (out / f"parameters_{domain}.png").write_bytes(
        plots.parameter_trajectories(params, title=f"Parameter trajectories, federated — {domain} ({result.dataset})"))
    curves = result.curves
    federated_auc = result.rows[0].metrics.get("auc")
    alone_auc = result.rows[2].metrics.get("auc")
    (out / f"roc_{domain}.png").write_bytes(plots.roc(
        curves["fpr"], curves["tpr"], federated_auc,
        baseline=(curves["baseline_fpr"], curves["baseline_tpr"], alone_auc),
        title=f"ROC on the test rows — {domain} ({result.dataset})",
    ))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    parser.add_argument("--out", type=Path, default=Path("docs/compare"))
    parser.add_argument("--key-bits", type=int, default=1024)
    parser.add_argument("--epsilons", default="1,3,10")
    parser.add_argument("--domains", default="healthcare,finance,user-data")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    epsilons = parse_epsilons(args.epsilons)
    command = "python scripts/compare_domains.py " + " ".join(argv if argv is not None else sys.argv[1:])
    losses: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sources = {
            "healthcare": lambda: _fate_pair(args.shared, "breast"),
            "finance": lambda: _fate_pair(args.shared, "default_credit"),
            "user-data": lambda: _demo_pair(Path(tmp)),
        }
        names = {"healthcare": "breast", "finance": "default_credit", "user-data": "bank + e-commerce demo"}
        for domain in args.domains.split(","):
            pair = sources[domain]()
            if pair is None:
                continue
            print(f"== {domain} ({names[domain]})", file=sys.stderr, flush=True)
            result = compare(*pair, model="logistic", dataset=names[domain], epsilons=epsilons, key_bits=args.key_bits)
            _write(args.out, domain, result, command.strip())
            losses[f"{domain} ({names[domain]})"] = result.loss_history
            print((args.out / f"{domain}.md").read_text(), flush=True)
    if losses:
        (args.out / "loss_by_domain.png").write_bytes(
            plots.loss_curves(losses, title="Federated training loss per epoch, by domain"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
