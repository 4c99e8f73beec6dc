"""The scorecard's documents (issue 28): the job report's scorecard section and the model document.

Both are made from a small synthetic ``scorecard`` section, in the two shapes
it comes in: a one-process simulation's result (every party's points table,
B's as rows) and party B's service record (only B's own table, as stored).
What they must show: B's bins, every characteristic's IV with its band, B's
points, score bands with bad rates, AUC/KS/Gini, stability with its bands.
What they must not: a partner's points table (only its range of totals).
"""

from __future__ import annotations

import copy
import html
import math
import re
from typing import Any

import pytest

from vfl.report.figures import figures_for
from vfl.report.html import render
from vfl.report.model_document import model_document
from vfl.report.scorecard_sections import own_points, stability
from vfl.report.summary import summary_from_record, summary_from_simulation

#: bin labels only partner A's points table has: none may appear in B's documents
PARTNER_LABELS = ["[7.125, 9.875)", "[9.875, inf)"]
B_IV, A_IV, AUC = 0.28174829, 0.86123456, 0.76522973


def _bins(rows: list[tuple[int, int]], labels: list[str] | None = None) -> list[dict[str, Any]]:
    events_total = sum(e for e, _ in rows)
    non_total = sum(n for _, n in rows)
    out = []
    for i, (e, n) in enumerate(rows):
        woe = math.log((n / non_total) / (e / events_total))
        entry = {"bin": i, "missing": False, "events": e, "nonevents": n, "total": e + n,
                 "share": (e + n) / (events_total + non_total), "event_rate": e / (e + n), "woe": woe,
                 "iv": (n / non_total - e / events_total) * woe}
        if labels:
            entry |= {"label": labels[i], "lower": None, "upper": None}
        out.append(entry)
    return out


def scorecard_section(b: str = "B", a: str = "A", rows_format: bool = True) -> dict[str, Any]:
    """A two-party scorecard's section: B with two characteristics (one dropped), A with two."""
    b_points = [
        {"characteristic": "utilisation", "bin": 0, "label": "[-inf, 0.35)", "lower": None, "upper": 0.35,
         "points": 21, "code": f"{b}:utilisation"},
        {"characteristic": "utilisation", "bin": 1, "label": "[0.35, 0.8)", "lower": 0.35, "upper": 0.8,
         "points": 4, "code": f"{b}:utilisation"},
        {"characteristic": "utilisation", "bin": 2, "label": "[0.8, inf)", "lower": 0.8, "upper": None,
         "points": -33, "code": f"{b}:utilisation"},
    ]
    a_points = [
        {"characteristic": "returns", "bin": 0, "label": "[-inf, 7.125)", "lower": None, "upper": 7.125,
         "points": 12, "code": f"{a}:returns"},
        {"characteristic": "returns", "bin": 1, "label": PARTNER_LABELS[0], "lower": 7.125, "upper": 9.875,
         "points": -7, "code": f"{a}:returns"},
        {"characteristic": "returns", "bin": 2, "label": PARTNER_LABELS[1], "lower": 9.875, "upper": None,
         "points": -58, "code": f"{a}:returns"},
    ]
    points: dict[str, Any] = {b: b_points, a: a_points}
    if not rows_format:  # a service record keeps only B's own table, as PointsTable.to_dict
        points = {b: {"party": b, "characteristics": [
            {"name": "utilisation", "bins": {"name": "utilisation", "cuts": [0.35, 0.8]}, "points": [21, 4, -33],
             "code": f"{b}:utilisation"}]}}
    labels = ["[-inf, 0.35)", "[0.35, 0.8)", "[0.8, inf)"]
    characteristics = [
        {"party": b, "name": "utilisation", "iv": B_IV, "band": "medium", "direction": "increasing", "selected": True,
         "bins": _bins([(120, 900), (200, 800), (330, 350)], labels)},
        {"party": b, "name": "age", "iv": 0.0081, "band": "unpredictive", "direction": "decreasing",
         "selected": False, "bins": _bins([(300, 1000), (350, 1050)], ["[-inf, 40)", "[40, inf)"])},
        {"party": a, "name": "returns", "iv": A_IV, "band": "suspicious", "direction": "increasing", "selected": True,
         "bins": _bins([(100, 1200), (250, 600), (300, 250)])},
        {"party": a, "name": "orders", "iv": 0.045, "band": "weak", "direction": "decreasing", "selected": True,
         "bins": _bins([(300, 900), (350, 1150)])},
    ]
    bands = [{"band": 0, "lower": None, "upper": 450.0, "rows": 300, "events": 150, "bad_rate": 0.5},
             {"band": 1, "lower": 450.0, "upper": 500.0, "rows": 300, "events": 60, "bad_rate": 0.2},
             {"band": 2, "lower": 500.0, "upper": None, "rows": 300, "events": 15, "bad_rate": 0.05}]
    metrics = {"auc": 0.7653, "ks": 0.4142, "accuracy": 0.81, "precision": 0.6, "recall": 0.35, "f1": 0.44,
               "log_loss": 0.44, "brier": 0.14, "rows": 900}
    return {
        "config": {"binning": {"method": "iv_optimal", "fine_bins": 20, "max_bins": 6, "min_share": 0.05,
                               "min_events": 5, "monotone": "auto", "monotone_by": {}},
                   "selection": {"min_iv": 0.02, "top_k": None, "max_correlation": 0.9, "max_vif": None},
                   "points0": 600.0, "odds0": 1 / 19, "pdo": 50.0, "reasons": 4, "bands": 3},
        "scaling": {"points0": 600.0, "odds0": 1 / 19, "pdo": 50.0, "factor": 72.13475204444818,
                    "offset": 387.6036243278207},
        "base_points": 467,
        "characteristics": characteristics,
        "points": points,
        "partner_ranges": {a: [-158, 29]},
        "score": {"split": "validation", "auc": AUC, "auc_before_rounding": 0.76576221, "ks": 0.41441596,
                  "gini": 2 * AUC - 1, "band_edges": [450.0, 500.0], "bands": bands,
                  "reference_counts": [1000, 1000, 1000],
                  "distribution": {"min": 270, "p10": 376.0, "median": 485.0, "p90": 509.0, "max": 529}},
        "baselines": {"bank_only": {"validation": {**metrics, "auc": 0.6954, "ks": 0.29}},
                      "pooled": {"description": "pooled", "metrics": {"validation": {**metrics, "auc": 0.7641}}}},
        "reasons": [{"row": 0, "id": "c0001", "score": 331, "reasons": [f"{a}:returns", f"{b}:utilisation"]}],
    }


def simulation_result(card: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `vfl simulate --scorecard` writes (without the cards and scores it keeps in memory)."""
    metrics = {"auc": 0.7658, "ks": 0.4142, "accuracy": 0.81, "precision": 0.6, "recall": 0.35, "f1": 0.44,
               "log_loss": 0.44, "brier": 0.14}
    return {
        "model": "scorecard", "job_id": "scorecard", "aligned_rows": 3000,
        "alignment": {"method": "rsa-blind-signature-psi", "party_a_ids": 3100, "party_b_ids": 3050,
                      "declared_size_a": 3100, "declared_size_b": 3050, "intersection": 3000, "seconds": 1.2,
                      "bytes": 1000},
        "train_rows": 2100, "validation_rows": 900, "epochs_run": 6, "stop_reason": "early_stopping",
        "loss_history": [0.6, 0.5, 0.47, 0.46, 0.455, 0.454],
        "metrics": {"train": {**metrics, "rows": 2100}, "validation": {**metrics, "rows": 900}},
        "decision": None,
        "config": {"model": "logistic", "epochs": 100, "optimizer": "newton", "key_bits": 1024, "l2": 0.0,
                   "validation_fraction": 0.3, "early_stopping_rounds": 5, "fit_intercept": True, "privacy": None},
        "seconds": 12.5, "timings": {"alignment": 1.2, "binning": 0.8, "training": 10.1},
        "scorecard": card or scorecard_section(),
    }


def service_record(card: dict[str, Any]) -> dict[str, Any]:
    """Party B's record of a scorecard service job ("bank" with feature party "shop")."""
    result = simulation_result()
    return {
        "job_id": "job-sc-1", "state": "succeeded", "epoch": 6, "stop_reason": "early_stopping",
        "stopped_at": 1796396632.1, "n_rows": 3000,
        "job_spec": {"training": result["config"], "party_a": {"peer": "shop", "dataset": "behaviour"},
                     "party_b": {"dataset": "credit"}, "psi": {"key_bits": 2048}},
        "peers": {"A": "shop", "B": "bank", "C": "arbiter"}, "metrics": result["metrics"], "baseline": None,
        "alignment": result["alignment"], "loss_history": result["loss_history"], "validation_loss_history": [],
        "timings": {"alignment": 1.2, "training": 10.1, "total": 12.0}, "scorecard": card,
    }


def text(page: str) -> str:
    """The page's text, as a reader sees it."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


# -- the report ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page() -> str:
    summary = summary_from_simulation(simulation_result(), "credit.csv + shop.csv",
                                      sources=["credit.csv", "shop.csv"])
    return render(summary, figures_for(summary))


def test_the_report_has_a_scorecard_section_with_its_tables_and_figure(page):
    for anchor in ('id="scorecard"', 'id="scorecard-quality"', 'id="scorecard-bands"', 'id="scorecard-iv"',
                   'id="scorecard-bins"', 'id="scorecard-points"', 'id="scorecard-partners"',
                   'id="scorecard-stability"', 'alt="scorecard_bands.png"'):
        assert anchor in page, anchor
    words = text(page)
    for heading in ("Score bands", "Information value of every characteristic", "Party B's bins",
                    "Party B's points table", "Partners' points", "Stability"):
        assert heading in words, heading
    assert "Party B's coefficients" not in words  # the points tables stand in for the weights


def test_the_report_shows_ivs_with_bands_auc_ks_gini_and_bad_rates(page):
    assert f'data-value="{B_IV!r}"' in page and f'data-value="{A_IV!r}"' in page  # exact IVs, B's and A's
    words = text(page)
    assert "0.2817" in words and "0.8612" in words and "suspicious" in words and "unpredictive" in words
    assert f'data-value="{AUC!r}"' in page and "AUC 0.765" in words and "KS 0.414" in words and "Gini 0.530" in words
    assert "50.0%" in words and "5.0%" in words  # bad rates of the lowest and highest bands
    assert "0.764" in words and "0.695" in words  # the pooled-data and bank-only AUCs
    # B's bins: counts, event rate, WOE
    assert "[0.8, inf)" in words and "330" in words and "48.5%" in words


def test_the_report_shows_bs_points_and_only_the_range_of_a_partners(page):
    words = text(page)
    assert "[0.35, 0.8)" in words and "B:utilisation" in words and "−33" not in words and "-33" in words
    assert "-158" in words and "29" in words
    for label in PARTNER_LABELS:
        assert label not in words, f"partner A's points row {label} leaked into B's report"
    assert "-58" not in words  # A's worst bin's points


def test_the_report_without_matplotlib_figures_still_renders_the_section():
    summary = summary_from_simulation(simulation_result(), "t")
    page = render(summary, {})
    assert 'id="scorecard-bands"' in page and "scorecard_bands.png" not in page


def test_stability_shows_psi_and_csi_with_their_bands():
    card = scorecard_section()
    card["stability"] = {"score": {"psi": 0.1732, "rows": 812},
                         "characteristics": [{"party": "B", "characteristic": "utilisation", "csi": 0.031,
                                              "rows": 812},
                                             {"party": "B", "characteristic": "age", "csi": 0.4, "rows": 812}]}
    view = stability(card)
    assert view["score"]["status"] == "watch" and [e["status"] for e in view["characteristics"]] == ["stable", "alarm"]
    summary = summary_from_simulation(simulation_result(card), "t")
    words = text(render(summary, {}))
    assert "Score PSI 0.1732 (watch)" in words and "alarm" in words and "0.0310" in words
    document = model_document(summary)
    assert "Score PSI 0.1732: watch" in document and "| B | age | 0.4000 | alarm | 812 |" in document


def test_a_service_record_renders_bs_table_from_its_stored_form():
    card = scorecard_section(b="bank", a="shop", rows_format=False)
    del card["baselines"]["pooled"]
    summary = summary_from_record(service_record(card))
    assert [r["label"] for r in own_points(card)] == ["[-inf, 0.35)", "[0.35, 0.8)", "[0.8, inf)"]
    words = text(render(summary, {}))
    assert "Party bank's points table" in words and "[0.35, 0.8)" in words and "bank:utilisation" in words
    assert "party shop" in words and "-158" in words
    document = model_document(summary)
    assert "| bank (label party) | credit |" in document and "| shop (feature party) | behaviour |" in document
    assert "no pooled-data baseline" in document


# -- the model document ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def document() -> str:
    summary = summary_from_simulation(simulation_result(), "credit.csv + shop.csv",
                                      sources=["credit.csv", "shop.csv"])
    return model_document(summary)


def test_the_model_document_has_the_sr_11_7_sections(document):
    for heading in ("# Model document", "## 1. Purpose", "## 2. Data", "## 3. Method", "## 4. Binning and selection",
                    "## 5. Performance", "## 6. Stability", "## 7. Limitations",
                    "## 8. Threat model and disclosure bounds", "## 9. Review and approval"):
        assert f"\n{heading}" in "\n" + document, heading


def test_the_model_document_gives_data_method_selection_and_performance(document):
    # data per party: sources, rows held, alignment
    assert "| B (label party) | credit.csv | 3,050 | 2 | 1 |" in document
    assert "| A (feature party) | shop.csv | 3,100 | 2 | 2 |" in document
    assert "3,000 applicants are held by every party" in document and "2,100 training, 900 validation" in document
    # method: PDO scaling with its parameters
    assert "600 points at odds (bad:good) 0.05263 (1:19)" in document and "50 points to double the odds" in document
    assert "factor = pdo / ln 2 = 72.135" in document and "Paillier" in document and "bin indicators" in document
    # binning and selection: the IV table and the rules
    assert "| B | utilisation | 0.2817 | medium | increasing | yes |" in document
    assert "| A | returns | 0.8612 | suspicious | increasing | yes |" in document
    assert "IV ≥ 0.02" in document and "|correlation| ≤ 0.9" in document
    assert "suspicious IV (≥ 0.5)" in document and "A:returns" in document
    # performance: the scorecard against the pooled-data and bank-only baselines
    assert "| validation | federated scorecard, integer points | 900 | 0.765 | 0.414 | 0.530 |" in document
    assert "| validation | pooled-data scorecard | 900 | 0.764 |" in document
    assert "| validation | party B alone | 900 | 0.695 |" in document
    # stability: the reference distribution and the alarm bands
    assert "below 0.1 stable, 0.1 to 0.25 watch" in document and "| 1 | below 450 | 1,000 | 33.3% |" in document


def test_the_model_document_states_the_threat_models_bounds(document):
    bounds = document.split("## 8. Threat model")[1]
    assert "event counts" in bounds and "bin edges" in bounds
    assert "partition of its fine bins" in bounds and "monotone direction" in bounds
    assert "Σ_b log2(n_b + 1) bits per characteristic per run" in bounds
    assert "budgeted per partner and dataset" in bounds
    assert "only its points total per applicant" in bounds and "reason codes" in bounds and "shortfalls" in bounds


def test_the_model_document_has_bs_points_and_only_a_partners_range(document):
    assert "| utilisation | [0.8, inf) | -33 | B:utilisation |" in document
    assert "| A | -158 | 29 |" in document
    for label in PARTNER_LABELS:
        assert label not in document
    assert "| -58 |" not in document and "| -7 |" not in document


def test_the_model_document_as_html():
    summary = summary_from_simulation(simulation_result(), "t")
    page = model_document(summary, form="html")
    assert page.startswith("<!DOCTYPE html>") and "<h2>8. Threat model and disclosure bounds</h2>" in page
    assert "<table>" in page and "0.2817" in page and PARTNER_LABELS[0] not in html.unescape(page)


def test_a_job_without_a_scorecard_has_no_model_document():
    summary = summary_from_simulation(simulation_result(), "t")
    summary = copy.deepcopy(summary) | {"scorecard": None}
    with pytest.raises(ValueError, match="scorecard"):
        model_document(summary)


def test_vfl_jobs_model_document_renders_the_records_section_with_its_stability(tmp_path):
    import argparse

    from vfl.cli.jobs import ACTIONS

    card = scorecard_section(b="bank", a="shop", rows_format=False)

    class Service:  # what `vfl jobs` gets from Orchestrator: the record, and B's stability endpoint
        def status(self, job_id: str) -> dict[str, Any]:
            return service_record(copy.deepcopy(card))

        def stability(self, job_id: str) -> dict[str, Any]:
            assert job_id == "job-sc-1"
            return {"job_id": "job-sc-1", "party": "bank", "score": {"psi": 0.31, "status": "alarm", "rows": 50}}

    out = tmp_path / "model.md"
    code = ACTIONS["model-document"](argparse.Namespace(job_id="job-sc-1", out=out), Service())
    document = out.read_text()
    assert code == 0 and "## 8. Threat model and disclosure bounds" in document
    assert "Score PSI 0.3100: alarm (50 served scores)" in document
    assert "| bank (label party) | credit |" in document and "| shop | -158 | 29 |" in document
