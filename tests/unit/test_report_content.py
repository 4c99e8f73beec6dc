"""What the job report says, for a bank analyst: the uplift headline, readable numbers and captions, the charts."""

from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
import pytest

from vfl.ml.metrics import model_metrics
from vfl.report import fmt
from vfl.ml.curves import curves_for
from vfl.report.figures import figures_for
from vfl.report.html import render
from vfl.report.summary import kept_epoch, summary_from_record

JOB = "job-7f3a9c2e1d44"
THRESHOLD = 0.4
NAMES = ["income", "credit_utilization", "late_payments_12m"]
HISTORY = [[0.10, 0.20, -0.05, -1.0], [0.15, 0.32, -0.11, -1.2], [0.14, 0.30, -0.12, -1.3], [0.13, 0.31, -0.10, -1.25]]
VALIDATION_LOSS = [0.50, 0.46, 0.44, 0.45]  # lowest at epoch 3: the model keeps epoch 3's weights


def _scores(rows: int = 1500, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a federated score and a weaker bank-only score on the same rows."""
    rng = np.random.default_rng(seed)
    signal_b, signal_a = rng.normal(size=rows), rng.normal(size=rows)
    labels = (signal_b + signal_a + rng.normal(scale=0.8, size=rows) > 1.2).astype(float)
    federated = 1 / (1 + np.exp(-(1.3 * signal_b + 1.3 * signal_a - 2.0)))
    alone = 1 / (1 + np.exp(-(1.3 * signal_b - 1.6)))
    return labels, federated, alone


def _record(model: str = "logistic") -> dict[str, Any]:
    """A finished two-party service job as party B stores it, with curves made by curves_for."""
    labels, federated, alone = _scores()
    if model == "linear":
        federated, alone, labels = 3000 + 900 * federated, 3000 + 900 * alone, 3000 + 900 * labels
    validation = np.arange(1200, 1500)
    metrics = {"train": model_metrics(model, labels[:1200], federated[:1200], threshold=THRESHOLD),
               "validation": model_metrics(model, labels[validation], federated[validation], threshold=THRESHOLD)}
    baseline = {"train": model_metrics(model, labels[:1200], alone[:1200], threshold=THRESHOLD),
                "validation": model_metrics(model, labels[validation], alone[validation], threshold=THRESHOLD)}
    decision = None
    if model == "logistic":
        decision = {"calibration": {"method": "platt", "a": 1.5, "b": 0.2}, "fitted_on": "validation", "rows": 300,
                    "threshold": {"value": THRESHOLD, "rule": "fixed", "target": None, "reached": True},
                    "uncalibrated": metrics}
    training = {"model": model, "epochs": 10, "batch_size": None, "learning_rate": None, "momentum": None,
                "optimizer": "newton", "privacy": None, "calibration": None, "key_bits": 2048,
                "validation_fraction": 0.2, "early_stopping_rounds": 5, "threshold": THRESHOLD, "l2": 0.0}
    return {
        "job_id": JOB, "state": "succeeded", "epoch": 4, "stop_reason": "converged", "stopped_at": 1796396632.1,
        "job_spec": {"training": training, "party_a": {"peer": "shop", "dataset": "behaviour"},
                 "party_b": {"dataset": "credit"}, "psi": {"key_bits": 2048}},
        "peers": {"A": "shop", "B": "bank", "C": "arbiter"}, "gradient_lengths": {"A": 7, "B": 4}, "n_rows": 1500,
        "metrics": metrics, "baseline": {"description": "party B alone", "metrics": baseline}, "decision": decision,
        "privacy": None, "timings": {"alignment": 12.3456, "training": 3329.2, "total": 3345.0},
        "alignment": {"party_a_ids": 3329245, "party_b_ids": 2100000, "intersection": 1500,
                      "overlap_of_a": 1500 / 3329245, "overlap_of_b": 1500 / 2100000, "seconds": 9.0, "bytes": 3329245},
        "loss_history": [0.69, 0.5, 0.45, 0.44], "validation_loss_history": VALIDATION_LOSS,
        "parameters": {"names": NAMES + ["intercept"], "history": HISTORY},
        "party_a_convergence": {"weight_norm": [0.3, 0.4, 0.45, 0.46], "step_norm": [0.3, 0.1, 0.05, 0.01]},
        "curves": curves_for(model, labels[validation], federated[validation], alone[validation]),
        "curve_split": "validation",
    }


def _visible_text(page: str) -> str:
    """What a reader sees: no tags, attributes, style or script."""
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def _uplift(page: str) -> dict[str, tuple[float, float, str]]:
    """The headline table: metric → (federated value, party B alone value, difference text)."""
    table = re.search(r'<table id="uplift".*?</table>', page, flags=re.S).group(0)
    rows = {}
    for name, body in re.findall(r'<tr data-metric="(\w+)">(.*?)</tr>', table, flags=re.S):
        values = [float(v) for v in re.findall(r'data-value="([^"]*)"', body)]
        difference = html.unescape(re.findall(r"<td>([^<]*)</td>", body)[-1])
        rows[name] = (values[0], values[1], difference)
    return rows


def _captions(page: str) -> dict[str, str]:
    return {name: html.unescape(caption) for name, caption in
            re.findall(r'alt="([^"]+)".*?<figcaption>(.*?)</figcaption>', page, flags=re.S)}


def test_the_page_opens_with_the_uplift_over_party_b_alone() -> None:
    # Arrange
    record = _record()
    summary = summary_from_record(record)

    # Act
    page = render(summary, {})
    uplift = _uplift(page)

    # Assert: the values are the job's own metrics on the curve split, and the difference is theirs
    federated, alone = record["metrics"]["validation"], record["baseline"]["metrics"]["validation"]
    assert list(uplift) == ["auc", "ks", "recall"]
    for name, (mine, theirs, difference) in uplift.items():
        assert mine == federated[name] and theirs == alone[name]
        assert difference == fmt.metric_change(name, federated[name], alone[name])
    assert uplift["auc"][2].startswith(f"+{federated['auc'] - alone['auc']:.3f}")
    assert uplift["recall"][2].startswith(f"+{100 * (federated['recall'] - alone['recall']):.1f} pp")
    text = _visible_text(page)
    assert text.index("Headline") < text.index("Job") < text.index("Alignment (RSA blind-signature PSI)")
    assert f"raises AUC from {alone['auc']:.3f} (party B alone) to {federated['auc']:.3f}" in text


def test_the_job_context_names_date_version_parties_data_model_key_and_threshold() -> None:
    # Arrange
    summary = summary_from_record(_record())

    # Act
    text = " ".join(_visible_text(render(summary, {})).split())

    # Assert
    for expected in ("finished 2026-12-04", "vfl version 0.1.0",
                     "party B (labels and features) bank, dataset “credit”, 3 features",
                     "party A (features) shop, dataset “behaviour”, 7 features", "arbiter arbiter",
                     "logistic regression, newton optimiser; 4 epochs run of at most 10, converged",
                     "weights kept epoch 3, the lowest validation loss", "2,048-bit Paillier (training), 2,048-bit RSA",
                     "threshold 0.40 (fixed in the job spec)", "1,500 aligned rows: 1,200 training, 300 validation"):
        assert expected in text, expected


def test_party_bs_coefficients_are_the_kept_epochs_weights_with_names_and_signs() -> None:
    # Arrange
    summary = summary_from_record(_record())

    # Act
    page = render(summary, {})
    rows = dict(re.findall(r'<tr data-feature="(\w+)">.*?data-value="([^"]+)"', page))

    # Assert: epoch 3 has the lowest validation loss, so the model holds its weights
    assert kept_epoch({"early_stopping_rounds": 5}, 4, VALIDATION_LOSS) == 3
    assert {name: float(v) for name, v in rows.items()} == {**dict(zip(NAMES, HISTORY[2][:3])),
                                                            "intercept": HISTORY[2][3]}
    order = re.findall(r'<tr data-feature="(\w+)">', page)
    assert order == ["credit_utilization", "income", "late_payments_12m", "intercept"]  # by size of weight
    assert "▼ lowers the score" in page and "▲ raises the score" in page
    text = _visible_text(page)
    assert "Party A's 7 weights stay with party A: party B never learns them" in " ".join(text.split())


def test_numbers_are_formatted_and_settings_are_words_not_nulls() -> None:
    # Arrange
    summary = summary_from_record(_record())

    # Act
    text = _visible_text(render(summary, {}))

    # Assert
    assert not re.search(r"\b(null|None|nan|NaN|true|false)\b", text)
    assert not re.search(r"\d\.\d{4,}", text), re.search(r".{40}\d\.\d{4,}.{20}", text)  # no 9.0000 or 0.766483
    assert not re.search(r"(?<![\d,.\-])\d{4,}(?![\d\-:])", text.replace("2026", "")), "a number without separators"
    for expected in ("3,329,245", "3,329,245 bytes (3.33 MB)", "0.045%", "12.3 s", "55 min 29 s",
                     "all training rows (full batch)", "default (0.7 for newton)", "default (Platt scaling)",
                     "20% of the aligned rows", "after 5 epochs without improvement"):
        assert expected in text, expected
    assert fmt.number(9.0) == "9" and fmt.number(3329245) == "3,329,245" and fmt.percent(0.5851) == "58.5%"


@pytest.mark.parametrize("model", ["logistic", "linear"])
def test_captions_name_the_model_and_legends_leave_out_the_job_id(model, monkeypatch) -> None:
    # Arrange
    pytest.importorskip("matplotlib")
    from vfl.report import plots

    drawn: list[str] = []
    png = plots._png

    def keep_texts(fig) -> bytes:
        for ax in fig.axes:
            legend = ax.get_legend()
            drawn.extend(t.get_text() for t in (legend.get_texts() if legend else []))
            drawn.append(ax.get_title())
        drawn.append(fig._suptitle.get_text() if fig._suptitle else "")
        return png(fig)

    monkeypatch.setattr(plots, "_png", keep_texts)
    summary = summary_from_record(_record(model))

    # Act
    figures = figures_for(summary)
    page = render(summary, figures)
    captions = _captions(page)

    # Assert
    assert drawn and not any(JOB in text for text in drawn)
    assert set(captions) == set(figures)
    for name, caption in captions.items():
        assert f"{model} regression" in caption, (name, caption)
        assert JOB not in caption
    assert "ROC curve, or predicted against actual" not in page


def test_a_logistic_job_has_ks_gains_calibration_and_the_confusion_matrix_at_its_threshold() -> None:
    # Arrange
    pytest.importorskip("matplotlib")
    labels, federated, _ = _scores()
    rows = slice(1200, 1500)
    summary = summary_from_record(_record())

    # Act
    figures = figures_for(summary)
    page = render(summary, figures)

    # Assert
    assert set(figures) == {"loss.png", "parameters.png", "roc_ks.png", "gains.png", "calibration.png"}
    assert all(png.startswith(b"\x89PNG") for png in figures.values())
    matrix = re.search(r'<table class="confusion" id="confusion">.*?</table>', page, flags=re.S).group(0)
    counts = {k: int(v) for k, v in re.findall(r'data-(tp|fn|fp|tn)="(\d+)"', matrix)}
    predicted, actual = federated[rows] >= THRESHOLD, labels[rows] == 1
    assert counts == {"tp": int((predicted & actual).sum()), "fn": int((~predicted & actual).sum()),
                      "fp": int((predicted & ~actual).sum()), "tn": int((~predicted & ~actual).sum())}
    assert "predicted 1<br><small>(p ≥ 0.40)" in matrix
    assert 'id="confusion-alone"' in page  # party B alone, at the same fixed threshold
    # the curves are aggregates: no row's score is kept in the record
    curves = summary["curves"]
    assert sum(curves["bands"]["rows"]) == 300 and len(curves["bands"]["rows"]) == 10
    assert sum(curves["calibration"]["rows"]) == 300
    assert sum(curves["histogram"]["positives"]) + sum(curves["histogram"]["negatives"]) == 300
    assert curves["positives"] == int(actual.sum())


def test_a_linear_job_has_a_residuals_plot_and_its_own_headline() -> None:
    # Arrange
    pytest.importorskip("matplotlib")
    record = _record("linear")
    summary = summary_from_record(record)

    # Act
    figures = figures_for(summary)
    page = render(summary, figures)

    # Assert
    assert set(figures) == {"loss.png", "parameters.png", "residuals.png"}
    assert list(_uplift(page)) == ["r2", "rmse", "mae"]
    assert "residuals (actual − predicted)" in _captions(page)["residuals.png"]
    assert 'id="confusion"' not in page and "threshold" not in _visible_text(page).split("Configuration")[0]
