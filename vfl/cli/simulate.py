"""``vfl simulate``: a whole federated job in one process, with real encryption, on CSV files."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from vfl.cli.arguments import check_output_file
from vfl.data.formats import read_text
from vfl.errors import ConfigError
from vfl.ml.config import TrainingConfig
from vfl.report.contributions import text_table
from vfl.report.progress import ProgressLine

#: Below these, `vfl simulate` warns that the model and its training metrics mean little.
FEW_TRAINING_ROWS = 50
ROWS_PER_PARAMETER = 10


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("simulate", help="run the feature parties, party B and the arbiter in one process")
    p.add_argument("--model", choices=["logistic", "linear"], default=None, help="default: logistic")
    p.add_argument("--party-a", required=True, metavar="A.csv", action="append",
                   help="a feature party's CSV (features only); give it once per feature party, in order")
    p.add_argument("--party-b", required=True, metavar="B.csv", help="party B's CSV (features and label)")
    p.add_argument("--id-column", required=True, action="append",
                   help="ID column: once for all files, or once more per --party-a file (B's first, then each "
                        "feature party's in order) where the names differ")
    p.add_argument("--label-column", default="y", help="label column in party B's file (default: y)")
    p.add_argument("--key-bits", type=int, default=None, help="Paillier and PSI key size (default 2048)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 100)")
    p.add_argument("--batch-size", type=int, default=None, help="rows per batch (default: all)")
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--optimizer", choices=["newton", "adam", "sgd"], default=None)
    p.add_argument("--l2", type=float, default=None)
    p.add_argument("--loss", choices=["taylor", "exact"], default=None,
                   help="logistic: taylor (default: FATE's Taylor approximation of the log-loss; the arbiter decrypts "
                        "only masked gradients and the loss) or exact (the log-loss itself, as scikit-learn; the "
                        "arbiter also sees each batch's scores, shuffled: docs/security.md)")
    p.add_argument("--validation-fraction", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workers", type=int, default=None,
                   help="crypto tasks at once (default: all cores, or the Ray cluster's CPUs)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where the crypto runs: this machine's cores (local), or a Ray cluster (needs vfl[ray])")
    p.add_argument("--address", default=None,
                   help="--engine ray: the cluster head (host:port from `ray start --head`); default: a new local one")
    p.add_argument("--config", type=Path, default=None,
                   help="JSON file with training settings, or a job spec (its 'training' section is used)")
    p.add_argument("--out", type=Path, required=True, help="where to write the result JSON")
    p.add_argument("--report", type=Path, default=None, help="also write an HTML report with figures here")
    p.add_argument("--contributions", action="store_true",
                   help="also train every coalition of feature parties (with party B) on the same rows and report "
                        "each feature party's Shapley value and leave-one-out figure (AUC or R²)")
    p.add_argument("--contribution-permutations", type=int, default=None, metavar="M",
                   help="--contributions: estimate by M sampled orders instead of exactly (the default above 4 "
                        "feature parties, with 20 orders)")
    p.add_argument("--ledger", type=Path, default=None, metavar="DIR",
                   help="append the job to the hash-chained ledger in DIR, signed by every party with keys made "
                        "for the occasion (kept in DIR/keys); check it with `vfl ledger verify DIR`")
    p.add_argument("--scorecard", action="store_true",
                   help="build a credit scorecard: federated WOE binning, IV selection, constrained LR, points "
                        "per party and reason codes (settings: the `scorecard` section of --config)")
    p.add_argument("--tables", type=Path, default=None, metavar="DIR",
                   help="with --scorecard: write each party's points table here as CSV and JSON")
    p.add_argument("--scores", type=Path, default=None, metavar="CSV",
                   help="with --scorecard: write every aligned applicant's score, points per party and reasons here")
    p.add_argument("--model-document", type=Path, default=None, metavar="FILE",
                   help="with --scorecard: also write the model document (SR 11-7 shape) here, as Markdown, or as "
                        "HTML when FILE ends in .html")
    data = p.add_argument_group("preparing each party's own columns and IDs (each party fits on its own rows)")
    data.add_argument("--impute", choices=["mean", "median", "constant"], default=None,
                      help="fill missing numbers with the training rows' mean or median, or with --impute-value "
                           "(default: a missing number refuses the file)")
    data.add_argument("--impute-value", type=float, default=None, help="the value for --impute constant")
    data.add_argument("--missing-indicator", action="store_true",
                      help="add a 0/1 column 'NAME (missing)' for each column with a missing cell")
    data.add_argument("--categorical", action="append", default=[], metavar="COLUMN=onehot|ordinal",
                      help="encode a text column (give it once per column); the categories come from the file")
    data.add_argument("--unseen-category", choices=["zeros", "refuse"], default=None,
                      help="what serving does with a category not seen in training (default: zeros)")
    data.add_argument("--id-normalize", action="append", default=[], metavar="RULE",
                      help="normalise every file's IDs before the PSI: strip-leading-zeros, drop-trailing-dot-zero, "
                           "lower, upper, remove-whitespace, remove-prefix=TEXT (give it once per rule)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(run=run)


def preparation_flags(args: argparse.Namespace) -> tuple[Any, Any]:
    """--impute, --categorical, ... and --id-normalize as a PrepConfig and IdRules (None where not given)."""
    from pydantic import ValidationError

    from vfl.data.ids import IdRules
    from vfl.ml.prep import PrepConfig

    categorical: dict[str, str] = {}
    for item in args.categorical:
        column, _, kind = item.partition("=")
        if not column or kind not in ("onehot", "ordinal"):
            raise ConfigError(f"--categorical {item!r}: write COLUMN=onehot or COLUMN=ordinal")
        categorical[column] = kind
    if args.impute_value is not None and args.impute != "constant":
        raise ConfigError("--impute-value goes with --impute constant")
    if args.missing_indicator and args.impute is None:
        raise ConfigError("--missing-indicator goes with --impute (mean, median or constant): the missing cells "
                          "still need a value")
    settings: dict[str, Any] = {"impute": args.impute, "missing_indicator": args.missing_indicator,
                                "categorical": categorical}
    if args.impute_value is not None:
        settings["impute_value"] = args.impute_value
    if args.unseen_category is not None:
        settings["unseen_category"] = args.unseen_category
    prep = PrepConfig(**settings)
    rules: dict[str, Any] = {}
    for item in args.id_normalize:
        rule, _, value = item.partition("=")
        rule = rule.strip().lower().replace("-", "_")
        if rule in ("strip_leading_zeros", "drop_trailing_dot_zero", "remove_whitespace") and not value:
            rules[rule] = True
        elif rule in ("lower", "upper") and not value:
            rules["case"] = rule
        elif rule == "remove_prefix" and value:
            rules["remove_prefix"] = value
        else:
            raise ConfigError(f"--id-normalize {item!r}: the rules are strip-leading-zeros, drop-trailing-dot-zero, "
                              "lower, upper, remove-whitespace and remove-prefix=TEXT")
    try:
        id_rules = IdRules(**rules)
    except ValidationError as exc:
        raise ConfigError(f"--id-normalize: {exc.errors()[0]['msg']}") from None
    return (prep if prep.active else None), (id_rules if id_rules.active else None)


def run(args: argparse.Namespace) -> int:
    from vfl.local.simulate import simulate_csv

    check_output_file("--out", args.out)
    check_output_file("--report", args.report)
    config = _training_config(args)
    _check_key_bits(config, args)
    columns = args.id_column
    if len(columns) not in (1, 1 + len(args.party_a)):
        raise ConfigError(f"--id-column was given {len(columns)} times for {len(args.party_a)} --party-a files: give "
                          f"it once, or {1 + len(args.party_a)} times (B's column, then each feature party's)")
    columns_a = columns[1:] if len(columns) > 1 else None
    if args.contribution_permutations is not None and (not args.contributions or args.contribution_permutations < 2):
        raise ConfigError("--contribution-permutations M goes with --contributions, and M must be at least 2")
    if args.ledger is not None and not args.ledger.parent.is_dir():
        raise ConfigError(f"--ledger {args.ledger}: the folder {args.ledger.parent} does not exist")
    prep, id_rules = preparation_flags(args)
    if args.scorecard:
        if prep is not None or id_rules is not None:
            raise ConfigError("--impute, --categorical and --id-normalize do not combine with --scorecard yet: a "
                              "scorecard bins missing values on their own; encode text columns as numbers first")
        return _run_scorecard(args, config, columns, columns_a)
    if args.tables is not None or args.scores is not None:
        raise ConfigError("--tables and --scores go with --scorecard: only a scorecard has points and reasons")
    if args.model_document is not None:
        raise ConfigError("--model-document goes with --scorecard: the document is a scorecard's")
    progress = ProgressLine()

    def on_coalition(done: int, total: int, parties: list[str]) -> None:
        if not args.quiet:
            progress.close()
            print(f"contributions: coalition {done + 1}/{total}: B + {' + '.join(parties)}", file=sys.stderr)

    extra: dict[str, Any] = {}
    if args.ledger is not None:
        import secrets

        extra = {"ledger": args.ledger, "job_id": "sim-" + secrets.token_hex(6)}
    try:
        result = simulate_csv(
            args.party_a, args.party_b, id_column=columns[0], label_column=args.label_column, config=config,
            id_column_a=columns_a, workers=args.workers, engine=args.engine, address=args.address,
            progress=None if args.quiet else progress.epoch, contributions=args.contributions,
            contribution_permutations=args.contribution_permutations, on_coalition=on_coalition, prep=prep,
            id_rules=id_rules, on_stage=None if args.quiet else progress.stage, **extra,
        )
    finally:
        progress.close()
    warnings = _training_warnings(result) + list(result.get("warnings") or [])
    if warnings:
        result["warnings"] = warnings
    args.out.write_text(json.dumps(result, indent=2))
    if args.report is not None:
        _write_report(result, args)
    for warning in warnings:
        print(f"vfl simulate: warning: {warning}", file=sys.stderr)
    print(f"{result['aligned_rows']} aligned rows, {result['epochs_run']} epochs ({result['stop_reason']}), "
          f"{result['seconds']:.1f}s")
    for party, prep in (result.get("preparation") or {}).items():
        print(f"  {party}: {preparation_text(prep)}")
    rows = {"train": result["train_rows"], "validation": result["validation_rows"]}
    if result.get("multiclass"):
        print(f"  one-vs-rest over {len(result['multiclass']['classes'])} classes "
              f"({', '.join(result['multiclass']['classes'])}): one binary model per class")
    for split, values in result["metrics"].items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float))
        print(f"  {split} metrics ({rows.get(split, '?')} rows): {shown}")
        for name, per in (values.get("per_class") or {}).items():
            auc = "n/a" if per["auc"] is None else f"{per['auc']:.4f}"
            print(f"    class {name}: AUC {auc}, precision {per['precision']:.4f}, recall {per['recall']:.4f}, "
                  f"{per['support']} rows")
    if result.get("contributions"):
        print(text_table(result["contributions"]))
    if result.get("ledger"):
        ledger = result["ledger"]
        print(f"ledger: entry {ledger['entry']} appended to {ledger['folder']} ({ledger['digest'][:16]}…), "
              f"signed by {', '.join(ledger['signed_by'])}")
    print(f"result written to {args.out}")
    return 0


def preparation_text(prep: dict[str, Any]) -> str:
    """One line on what a party did to its own columns: cells filled, indicators, encoded text columns."""
    parts = []
    missing = prep.get("missing_on_training_rows") or {}
    if prep.get("impute"):
        how = (f"the constant {prep['impute_value']:g}" if prep["impute"] == "constant"
               else f"the {prep['impute']} of its training rows")
        parts.append(f"{sum(missing.values())} missing cells in {len(missing)} columns filled with {how}")
    if prep.get("indicators"):
        parts.append(f"{len(prep['indicators'])} missing-indicator columns")
    for name, encoded in (prep.get("categorical") or {}).items():
        parts.append(f"{name!r} encoded {encoded['encoding']} ({encoded['categories']} categories)")
    return "; ".join(parts) or "columns used as they are"


def _run_scorecard(args: argparse.Namespace, config: TrainingConfig, columns: list[str],
                   columns_a: list[str] | None) -> int:
    """--scorecard: the scorecard chain in one process; prints B's points table, partner ranges and reasons."""
    from vfl.data.table import load_csv
    from vfl.local.scorecard import simulate_scorecard
    from vfl.ml.scorecard.config import ScorecardConfig

    if args.contributions or args.ledger is not None:
        raise ConfigError("--scorecard does not combine with --contributions or --ledger yet; run them separately")
    if args.tables is not None and not args.tables.parent.is_dir():
        raise ConfigError(f"--tables {args.tables}: the folder {args.tables.parent} does not exist")
    check_output_file("--model-document", args.model_document)
    scorecard = ScorecardConfig.parse(_config_section(args, "scorecard"))
    ids_a = columns_a or [columns[0]] * len(args.party_a)
    # A scorecard bins missing values on their own: they are kept, not refused.
    tables = [load_csv(f, id_column=c, allow_missing=True) for f, c in zip(args.party_a, ids_a)]
    table_b = load_csv(args.party_b, id_column=columns[0], label_column=args.label_column, model=config.model,
                       allow_missing=True)
    progress = ProgressLine()
    try:
        result = simulate_scorecard(tables, table_b, config, scorecard, workers=args.workers, engine=args.engine,
                                    progress=None if args.quiet else progress.epoch,
                                    on_stage=None if args.quiet else progress.stage)
    finally:
        progress.close()
    check_output_file("--scores", args.scores)
    cards = result.pop("cards")
    binned = result.pop("bins")
    result.pop("scores")
    applicants = result.pop("applicants")
    args.out.write_text(json.dumps(result, indent=2))
    if args.tables is not None:
        args.tables.mkdir(exist_ok=True)
        for party, card in cards.items():
            (args.tables / f"points-{party}.csv").write_text(card.table.to_csv())
            (args.tables / f"points-{party}.json").write_text(json.dumps(card.table.to_dict(), indent=2))
        for party, bins in binned.items():  # every characteristic binned, kept or not: its IV is in the result
            (args.tables / f"bins-{party}.csv").write_text(bins_csv(bins))
        print(f"points tables written to {args.tables}")
    if args.scores is not None:
        args.scores.write_text(applicants_csv(applicants))
        print(f"scores and reasons of {len(applicants['ids'])} applicants written to {args.scores}")
    _write_scorecard_documents(result, args)
    for warning in result["scorecard"]["score"].get("warnings", []):
        print(f"vfl simulate: warning: {warning}", file=sys.stderr)
    print(scorecard_text(result))
    print(f"result written to {args.out}")
    return 0


def _write_scorecard_documents(result: dict[str, Any], args: argparse.Namespace) -> None:
    """--report and --model-document of a scorecard: the job report with its scorecard section, the model document."""
    if args.report is None and args.model_document is None:
        return
    from vfl.report.summary import summary_from_simulation

    sources = [Path(args.party_b).name, *(Path(f).name for f in args.party_a)]
    summary = summary_from_simulation(result, " + ".join(sources), sources=sources)
    if args.report is not None:
        from vfl.report.figures import figures_for
        from vfl.report.html import render

        args.report.write_text(render(summary, figures_for(summary)))
        print(f"report written to {args.report}")
    if args.model_document is not None:
        from vfl.report.model_document import model_document

        form = "html" if args.model_document.suffix.lower() in (".html", ".htm") else "markdown"
        args.model_document.write_text(model_document(summary, form=form))
        print(f"model document written to {args.model_document}")


def bins_csv(bins: dict[str, Any]) -> str:
    """One row per bin of every characteristic a party binned: lower ≤ x < upper (empty: unbounded), or missing."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["characteristic", "bin", "label", "lower", "upper"])
    for name, b in bins.items():
        for index, (label, interval) in enumerate(zip(b.labels(), b.intervals())):
            lower, upper = ("", "") if interval is None else interval
            writer.writerow([name, index, label, "" if lower in ("", -math.inf) else repr(lower),
                             "" if upper in ("", math.inf) else repr(upper)])
    return out.getvalue()


def applicants_csv(applicants: dict[str, Any]) -> str:
    """One row per applicant: ID, score, each party's points, up to four reason codes."""
    import csv
    import io

    parties = list(applicants["points"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "score", *(f"points_{p}" for p in parties), "reason_1", "reason_2", "reason_3", "reason_4"])
    for i, applicant in enumerate(applicants["ids"]):
        reasons = list(applicants["reasons"][i])[:4]
        writer.writerow([applicant, int(applicants["scores"][i]), *(int(applicants["points"][p][i]) for p in parties),
                         *(reasons + [""] * (4 - len(reasons)))])
    return out.getvalue()


def scorecard_text(result: dict[str, Any]) -> str:
    """What a person reads first: B's points table, each partner's total range, one applicant's reasons."""
    card = result["scorecard"]
    score = card["score"]
    lines = [f"{result['aligned_rows']} aligned rows, {result['epochs_run']} epochs ({result['stop_reason']}), "
             f"{result['seconds']:.1f}s (binning {result['timings']['binning']:.1f}s)",
             f"score on the {score['split']} rows: AUC {score['auc']:.4f} (before rounding to points "
             f"{score['auc_before_rounding']:.4f}), KS {score['ks']:.4f}, Gini {score['gini']:.4f}",
             f"base points (party B): {card['base_points']}", "party B's points table:"]
    for row in card["points"]["B"]:
        lines.append(f"  {row['characteristic']:<24} {row['label']:<24} {row['points']:>6}")
    for party, (low, high) in card["partner_ranges"].items():
        lines.append(f"party {party}'s points (kept by {party}): from {low} to {high}")
    iv = sorted(card["characteristics"], key=lambda c: -c["iv"])
    lines.append("information value: " + ", ".join(
        f"{c['party']}:{c['name']} {c['iv']:.3f}{'' if c['selected'] else ' (dropped)'}" for c in iv[:12]))
    if card["reasons"]:
        first = card["reasons"][0]
        lines.append(f"applicant {first['id']}: score {first['score']}, reasons: "
                     f"{', '.join(first['reasons']) or 'none (best points on every characteristic)'}")
    return "\n".join(lines)


def _config_section(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """One section of --config (a job spec), or {} without --config."""
    if args.config is None:
        return {}
    try:
        settings = json.loads(read_text(args.config, "JSON config file"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{args.config}: cannot read the config ({exc})") from exc
    section = settings.get(name, {}) if isinstance(settings, dict) else {}
    if not isinstance(section, dict):
        raise ConfigError(f"{args.config}: the {name!r} section must be a JSON object")
    return section


def _training_config(args: argparse.Namespace) -> TrainingConfig:
    """--config's settings (a training section or a whole job spec), overridden by the flags given."""
    settings: dict[str, Any] = {}
    if args.config is not None:
        try:
            settings = json.loads(read_text(args.config, "JSON config file"))  # a BOM is dropped
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{args.config}: cannot read the training config ({exc})") from exc
        if not isinstance(settings, dict):
            raise ConfigError(f"{args.config}: expected a JSON object")
        if settings.get("prepare"):  # a job spec's per-party preparation: the simulation takes it from flags
            print(f"vfl simulate: warning: {args.config}'s \"prepare\" is for the services; vfl simulate prepares "
                  "every party alike by --impute, --missing-indicator, --categorical and --unseen-category",
                  file=sys.stderr)
        if "training" in settings:  # a job spec, such as the job.json that vfl demo writes
            settings = dict(settings["training"])
    flags = {
        "model": args.model, "key_bits": args.key_bits, "epochs": args.epochs, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "optimizer": args.optimizer, "l2": args.l2,
        "loss": args.loss,
        "validation_fraction": args.validation_fraction, "seed": args.seed,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    return TrainingConfig.parse(settings)


def _check_key_bits(config: TrainingConfig, args: argparse.Namespace) -> None:
    """Refuse keys too small for the simulation, naming where the size came from (--key-bits or --config)."""
    from vfl.local.simulate import SIMULATION_MIN_KEY_BITS

    if config.key_bits < SIMULATION_MIN_KEY_BITS:
        given = (f"--key-bits {config.key_bits}" if args.key_bits is not None
                 else f"key_bits {config.key_bits} in {args.config}")
        raise ConfigError(f"{given} is too small: vfl simulate needs keys of at least "
                          f"{SIMULATION_MIN_KEY_BITS} bits (services, by default, of 2048); give --key-bits "
                          f"{SIMULATION_MIN_KEY_BITS} or more")


def _parameter_count(result: dict[str, Any]) -> int:
    """Weights of every party plus B's intercept: what the training rows have to pin down."""
    part_b = result["model_parts"]["party_b"]
    if part_b.get("multiclass"):  # one-vs-rest: each class's binary model fits the rows by itself
        part_b = part_b["parts"][0]
    count = sum(int(f["features"]) for f in result["feature_parties"]) + len(part_b["weights"])
    return count + (1 if part_b.get("intercept") is not None and result["config"].get("fit_intercept", True) else 0)


def _training_warnings(result: dict[str, Any]) -> list[str]:
    """A warning when too few training rows pin down the parameters, with what to change."""
    rows, parameters = int(result["train_rows"]), _parameter_count(result)
    if rows >= max(FEW_TRAINING_ROWS, ROWS_PER_PARAMETER * parameters):
        return []
    held = result.get("validation_rows") or 0
    advice = (f"lower --validation-fraction ({held} of the {result['aligned_rows']} aligned rows are held out) "
              "or add rows") if held else "add rows"
    return [f"trained on only {rows} rows for {parameters} parameters (advised: at least {FEW_TRAINING_ROWS} rows "
            f"and {ROWS_PER_PARAMETER} per parameter, here {max(FEW_TRAINING_ROWS, ROWS_PER_PARAMETER * parameters)}); "
            f"the model and its metrics mean little: {advice}"]


def _write_report(result: dict[str, Any], args: argparse.Namespace) -> None:
    """--report: the same HTML page a service writes for its jobs, titled with the input files' names."""
    from vfl.report.figures import figures_for
    from vfl.report.html import render
    from vfl.report.summary import summary_from_simulation

    names = " + ".join(Path(f).name for f in args.party_a)
    summary = summary_from_simulation(result, f"{Path(args.party_b).name} + {names}")
    args.report.write_text(render(summary, figures_for(summary)))
    print(f"report written to {args.report}")
