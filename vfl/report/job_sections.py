"""The report's sections on how the job ran: its context, privacy, alignment (PSI), timings and settings."""

from __future__ import annotations

from typing import Any

import vfl
from vfl.ml.config import DEFAULT_LEARNING_RATE, DEFAULT_MOMENTUM
from vfl.report import fmt
from vfl.report.markup import MODEL_NAMES, STOP_REASONS, html_table, model_name, threshold_words
from vfl.report.progress import timing_text
from vfl.report.summary import pairwise_size


def context_section(summary: dict[str, Any]) -> str:
    """The job in one table: when, which version, who, what data, which model and settings."""
    config = summary.get("config") or {}
    rows: list[list[Any]] = [["job", summary["title"]], ["state", summary.get("state") or "—"]]
    if summary.get("finished_at"):
        rows.append(["finished", fmt.when(summary["finished_at"])])
    rows.append(["vfl version", summary.get("version") or vfl.__version__])
    for party in summary.get("parties") or []:
        pieces = [party["id"]] if party.get("id") else []
        if party.get("dataset"):
            pieces.append(f"dataset “{party['dataset']}”")
        if party.get("features") is not None:
            pieces.append(fmt.plural(party["features"], "feature"))
        rows.append([party["role"], ", ".join(pieces) or "—"])
    model = model_name(summary)
    epochs = summary.get("epochs")
    stop = STOP_REASONS.get(summary.get("stop_reason") or "", summary.get("stop_reason") or "")
    text = f"{model}, {config.get('optimizer', 'newton')} optimiser; {fmt.plural(int(epochs or 0), 'epoch')} run"
    if config.get("epochs"):
        text += f" of at most {fmt.integer(config['epochs'])}"
    rows.append(["model", text + (f", {stop}" if stop else "")])
    kept = summary.get("kept_epoch")
    if kept is not None and summary.get("validation_loss_history"):
        rows.append(["weights kept", f"epoch {kept}, the lowest validation loss"])
    counts = summary.get("rows") or {}
    if counts.get("aligned") is not None:
        text = f"{fmt.integer(counts['aligned'])} aligned rows"
        parts = [f"{fmt.integer(counts[s])} {s}" for s in ("training", "validation") if counts.get(s)]
        rows.append(["rows", text + (f": {', '.join(parts)}" if parts else "")])
    if config.get("key_bits"):
        psi = f", {fmt.integer(summary['psi_key_bits'])}-bit RSA (PSI)" if summary.get("psi_key_bits") else ""
        rows.append(["key size", f"{fmt.integer(config['key_bits'])}-bit Paillier (training){psi}"])
    decision = summary.get("decision")
    if decision:
        rows.append(["threshold", threshold_words(decision)])
        rows.append(["calibration", "Platt scaling" if decision.get("calibration") else "none: p = σ(u)"])
    elif summary.get("model") == "logistic":
        rows.append(["threshold", "0.50"])
    privacy = summary.get("privacy")
    rows.append(["differential privacy",
                 f"ε = {privacy['epsilon']:g}, δ = {privacy['delta']:g}" if privacy else "off"])
    return html_table(rows, ["", ""], css="context")


def privacy_section(privacy: dict[str, Any] | None) -> str:
    """Differential privacy's parameters and what was spent, or a line saying the training was exact."""
    if not privacy:
        return "<p>Not differentially private: no noise was added (exact federated training).</p>"
    words = {"epsilon": ("ε spent", lambda v: f"{v:g}"), "delta": ("δ", lambda v: f"{v:g}"),
             "noise_multiplier": ("noise multiplier σ", lambda v: f"{v:.3g}"),
             "sensitivity": ("sensitivity S", lambda v: f"{v:.3g}"),
             "noise_std": ("noise standard deviation σ·S", lambda v: f"{v:.3g}"),
             "sampling_rate": ("sampling rate (batch ÷ rows)", fmt.percent),
             "steps": ("noisy steps", fmt.integer), "row_clip": ("row clip C", fmt.number),
             "weight_bound": ("weight bound W", fmt.number), "label_clip": ("label clip Y (linear)", fmt.number),
             "accountant": ("accountant", str)}
    rows = [[words.get(k, (k, fmt.number))[0], words.get(k, (k, fmt.number))[1](v)] for k, v in privacy.items()
            if v is not None]
    return html_table(rows, ["privacy", "value"])


def alignment_section(summary: dict[str, Any]) -> str:
    """The PSI's figures: IDs on each side, the shared IDs, time and bytes (k ≥ 2: one row per feature party)."""
    alignment = summary.get("alignment") or {}
    features = summary.get("feature_parties")
    if not features:
        return html_table([["party A IDs", alignment.get("party_a_ids")],
                           ["party B IDs", alignment.get("party_b_ids")],
                           ["shared IDs", alignment.get("intersection")],
                           ["share of A", fmt.percent(alignment.get("overlap_of_a"))],
                           ["share of B", fmt.percent(alignment.get("overlap_of_b"))],
                           ["time", fmt.seconds(alignment.get("seconds"))],
                           ["bytes exchanged", fmt.size(alignment.get("bytes"))]], ["alignment", "value"])
    # k ≥ 2: B ran one PSI per feature party; the job trains on the IDs all of them share with B.
    joint = html_table([["party B IDs", alignment.get("party_b_ids")],
                        ["joint IDs (held by every party)", alignment.get("intersection")],
                        ["share of B", fmt.percent(alignment.get("overlap_of_b"))],
                        ["time", fmt.seconds(alignment.get("seconds"))],
                        ["bytes exchanged", fmt.size(alignment.get("bytes"))]], ["alignment", "value"])
    pairwise = html_table([[f["party"], (f.get("alignment") or {}).get("party_a_ids"), pairwise_size(f),
                            fmt.percent((f.get("alignment") or {}).get("overlap_of_a"))] for f in features],
                          ["feature party", "its IDs", "shared with party B (pairwise PSI)", "share of its IDs"])
    return joint + pairwise


def timings_section(summary: dict[str, Any]) -> str:
    """How long alignment, training and the whole job took."""
    names = {"alignment": "alignment (PSI)", "training": "training", "total": "total, submission to result"}
    rows = [[names.get(k, k), fmt.seconds(v)] for k, v in (summary.get("timings") or {}).items()
            if not isinstance(v, dict)]
    table = html_table(rows, ["stage", "time"])
    by_party = summary.get("party_timings") or []
    if not by_party:
        return table
    party_rows = [[f"{entry.get('party')} ({entry.get('role')})", timing_text(entry)] for entry in by_party]
    return table + "<h3>By party</h3>" + html_table(party_rows, ["party", "seconds per stage (rounded to 0.1 s)"])


def settings_section(summary: dict[str, Any]) -> str:
    """The training settings in words: "all training rows", "default (0.7 for newton)", never null."""
    config = dict(summary.get("config") or {})
    model = config.get("model") or summary.get("model") or "logistic"
    optimizer = config.get("optimizer") or "newton"
    validation = config.get("validation_fraction") or 0
    words = {
        "model": lambda v: MODEL_NAMES.get(v, v),
        "epochs": lambda v: f"at most {fmt.integer(v)}",
        "batch_size": lambda v: "all training rows (full batch)" if v is None else f"{fmt.integer(v)} rows",
        "optimizer": lambda v: {"newton": "Newton (party-local)", "adam": "Adam", "sgd": "SGD"}.get(v, v),
        "learning_rate": lambda v: (f"default ({DEFAULT_LEARNING_RATE.get(optimizer, '—')} for {optimizer})"
                                    if v is None else fmt.number(v)),
        "momentum": lambda v: (f"default ({DEFAULT_MOMENTUM.get(optimizer, 0)} for {optimizer})"
                               if v is None else fmt.number(v)),
        "decay": lambda v: "none" if not v else f"lr ÷ (1 + {fmt.number(v)}·epoch)",
        "decay_sqrt": lambda v: "yes" if v else "no",
        "l2": lambda v: "none" if not v else f"λ = {fmt.number(v)}",
        "fit_intercept": lambda v: "yes" if v or v is None else "no",
        "tol": lambda v: f"stop when the loss moves less than {v:g}" if v else "never stop on the loss",
        "seed": lambda v: fmt.number(v),
        "validation_fraction": lambda v: (f"{fmt.percent(v, 0)} of the aligned rows" if v
                                          else "none: every aligned row trains"),
        "early_stopping_rounds": lambda v: ("off" if not v else "not used (no validation split)" if not validation
                                            else f"after {fmt.plural(v, 'epoch')} without improvement"),
        "loss_every": lambda v: "every batch" if v in (None, 1) else f"every {fmt.integer(v)} batches",
        "key_bits": lambda v: f"{fmt.integer(v)} bits",
        "feature_frac_bits": lambda v: f"{v} fractional bits",
        "value_frac_bits": lambda v: f"{v} fractional bits",
        "obfuscation": lambda v: {"djn": "DJN (fast)", "strict": "strict (fresh randomness per value)"}.get(v, v),
        "privacy": lambda v: ("off" if not v else
                              ", ".join(f"{k} {fmt.number(x)}" for k, x in v.items() if x is not None)),
        "calibration": lambda v: ("none (linear model)" if model == "linear" else
                                  "default (Platt scaling)" if v is None else {"platt": "Platt scaling",
                                                                              "none": "none"}.get(v, v)),
        "threshold": lambda v: ("not used (linear model)" if model == "linear" else
                                f"{float(v):.2f}, fixed" if isinstance(v, (int, float)) else
                                f"picked by {v.get('pick')}" + (f", target {v['target']}" if v.get("target") else "")),
    }
    labels = {"batch_size": "batch size", "learning_rate": "learning rate", "decay_sqrt": "square-root decay",
              "l2": "L2 penalty", "fit_intercept": "intercept", "tol": "tolerance",
              "validation_fraction": "validation split", "early_stopping_rounds": "early stopping",
              "loss_every": "loss computed", "key_bits": "Paillier key", "feature_frac_bits": "feature precision",
              "value_frac_bits": "score precision", "obfuscation": "ciphertext obfuscation",
              "privacy": "differential privacy"}
    rows = []
    for key in list(words) + [k for k in config if k not in words]:
        if key not in config and key not in ("batch_size", "learning_rate", "momentum", "privacy", "calibration"):
            continue
        value = config.get(key)
        try:
            text = words[key](value) if key in words else ("default" if value is None else fmt.number(value))
        except (TypeError, ValueError, AttributeError):
            text = "default" if value is None else fmt.number(value)
        rows.append([labels.get(key, key.replace("_", " ")), text])
    return html_table(rows, ["setting", "value"], css="settings")
