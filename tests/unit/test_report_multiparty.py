"""The job report with k ≥ 2 feature parties names every one of them; with one it still says "party A"."""

from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from vfl.ml.config import TrainingConfig
from vfl.data.table import PartyTable, from_dataframe
from vfl.report.figures import figures_for
from vfl.report.html import render
from vfl.report.summary import summary_from_record, summary_from_simulation
from vfl.local.simulate import simulate

FEATURES = ["shop", "telco"]
NORMS = {"shop": {"weight_norm": [0.5, 0.7], "step_norm": [0.5, 0.2]},
         "telco": {"weight_norm": [0.3, 0.4], "step_norm": [0.3, 0.1]}}


def _pair(party_ids: int, shared: int, b_ids: int = 280) -> dict[str, Any]:
    """One pairwise PSI summary, shaped like psi.joint.alignment_summary."""
    return {"method": "rsa-blind-signature-psi", "party_a_ids": party_ids, "party_b_ids": b_ids,
            "declared_size_a": party_ids, "declared_size_b": b_ids, "intersection": shared,
            "overlap_of_a": shared / party_ids, "overlap_of_b": shared / b_ids, "seconds": 0.2, "bytes": 500}


def _record(k: int) -> dict[str, Any]:
    """A finished service job as party B stores it (JobRecord.model_dump), with k feature parties."""
    record: dict[str, Any] = {
        "job_id": f"job-k{k}", "state": "succeeded", "epoch": 2, "stop_reason": "max_epochs",
        "job_spec": {"training": {"epochs": 2}}, "metrics": {"train": {"auc": 0.91, "rows": 230}},
        "baseline": {"metrics": {"train": {"auc": 0.8}}}, "privacy": None, "timings": {"alignment": 0.4},
        "loss_history": [0.6, 0.5], "validation_loss_history": [],
        "parameters": {"names": ["b0", "b1"], "history": [[0.1, 0.2], [0.2, 0.3]]},
        "curves": {"kind": "roc", "fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.8, 1.0]}, "curve_split": "train",
    }
    if k == 1:
        record.update(alignment=_pair(300, 250), party_a_convergence=NORMS["shop"])
        return record
    record.update(
        roster={"features": FEATURES, "label": "bank", "arbiter": "arbiter"},
        party_a_convergence=NORMS["shop"], feature_convergence=NORMS,
        alignment={"method": "rsa-blind-signature-psi", "party_b_ids": 280, "intersection": 230,
                   "overlap_of_b": 230 / 280, "seconds": 0.4, "bytes": 1000, "declared_size_b": 280,
                   # telco's entry first: the report must follow the roster, not this list's order
                   "feature_parties": [{"party": "telco", **_pair(310, 260), "pairwise_intersection": 260},
                                       {"party": "shop", **_pair(300, 250), "pairwise_intersection": 250}]},
    )
    return record


def _learned(page: str) -> dict[str, str]:
    """The "What each party learned" list of a page: party → text."""
    return {html.unescape(p): html.unescape(t) for p, t in re.findall(r"<li><b>(.*?)</b>: (.*?)</li>", page)}


def _figure_caption(page: str, name: str) -> str:
    match = re.search(rf'alt="{re.escape(name)}".*?<figcaption>(.*?)</figcaption>', page)
    assert match, f"no {name} figure on the page"
    return html.unescape(match.group(1))


def test_service_report_names_each_feature_party_in_roster_order() -> None:
    # Arrange
    summary = summary_from_record(_record(k=2))

    # Act
    page = render(summary, {})
    learned = _learned(page)

    # Assert
    assert list(learned) == ["feature party shop (features)", "feature party telco (features)",
                             "party B (features and labels)", "arbiter"]
    assert "the 250 IDs it shares with party B" in learned["feature party shop (features)"]
    assert "the 260 IDs it shares with party B" in learned["feature party telco (features)"]
    assert "No label, no loss" in learned["feature party telco (features)"]
    bank = learned["party B (features and labels)"]
    assert "shop: 300 IDs, 250 shared" in bank and "telco: 310 IDs, 260 shared" in bank
    assert "the 230 joint IDs" in bank and "norm of each feature party's weights" in bank
    assert "party A" not in page


def test_service_report_alignment_table_has_each_feature_partys_pairwise_figures() -> None:
    # Arrange
    summary = summary_from_record(_record(k=2))

    # Act
    page = render(summary, {})

    # Assert
    assert "<tr><td>shop</td><td>300</td><td>250</td>" in page
    assert "<tr><td>telco</td><td>310</td><td>260</td>" in page
    assert "<td>joint IDs (held by every party)</td><td>230</td>" in page


def test_service_report_draws_one_norm_panel_per_feature_party() -> None:
    # Arrange
    pytest.importorskip("matplotlib")
    summary = summary_from_record(_record(k=2))

    # Act
    page = render(summary, figures_for(summary))

    # Assert
    caption = _figure_caption(page, "parameters.png")
    shop = caption.index("feature party shop (keeps its weights; shares their norms)")
    telco = caption.index("feature party telco (keeps its weights; shares their norms)")
    assert shop < telco < caption.index("party B")
    assert "party A keeps its weights" not in caption


def test_two_party_service_report_still_speaks_of_party_a() -> None:
    # Arrange
    summary = summary_from_record(_record(k=1))

    # Act
    page = render(summary, {})
    learned = _learned(page)

    # Assert
    assert list(learned) == ["party A (features)", "party B (features and labels)", "arbiter"]
    assert "that party A holds 300 IDs" in learned["party B (features and labels)"]
    assert "<td>party A IDs</td><td>300</td>" in page
    assert "feature party" not in page


def test_two_party_service_report_keeps_its_party_a_panel_and_caption() -> None:
    # Arrange
    pytest.importorskip("matplotlib")
    summary = summary_from_record(_record(k=1))

    # Act
    page = render(summary, figures_for(summary))

    # Assert
    assert _figure_caption(page, "parameters.png") == (
        "Each party's weights after every epoch of this logistic regression; party A keeps its weights, so a service "
        "job shows only their norm and each epoch's change.")


def _tables(rows: int = 300, k: int = 2, seed: int = 0) -> tuple[list[PartyTable], PartyTable]:
    """B and k feature parties on a column split of synthetic data; each party misses about 10% of the people."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3 * (k + 1)))
    y = (X @ rng.normal(size=X.shape[1]) + rng.normal(scale=0.5, size=rows) > 0).astype(float)
    ids = np.array([f"c{i:04d}" for i in range(rows)])
    blocks = np.array_split(np.arange(X.shape[1]), k + 1)

    def frame(h: int, **extra: Any) -> pd.DataFrame:
        keep = rng.random(rows) > 0.1
        columns = {f"x{j}": X[keep, j] for j in blocks[h]}
        return pd.DataFrame({"id": ids[keep], **columns, **{n: v[keep] for n, v in extra.items()}})

    table_b = from_dataframe(frame(0, y=y), id_column="id", label_column="y", model="logistic")
    return [from_dataframe(frame(h), id_column="id") for h in range(1, k + 1)], table_b


def test_simulated_report_shows_both_feature_parties() -> None:
    # Arrange
    tables, table_b = _tables()
    result = simulate(tables, table_b, TrainingConfig(key_bits=1024, epochs=2), workers=1)
    summary = summary_from_simulation(result, title="two feature parties")

    # Act
    page = render(summary, figures_for(summary))
    learned = _learned(page)

    # Assert
    assert [p for p in learned if p.startswith("feature party")] == ["feature party A1 (features)",
                                                                     "feature party A2 (features)"]
    for pair, party in zip(result["alignment"]["feature_parties"], ("A1", "A2")):
        assert f"<tr><td>{party}</td><td>{pair['party_a_ids']}</td><td>{pair['pairwise_intersection']}</td>" in page
    assert f"the {result['aligned_rows']} joint IDs" in learned["party B (features and labels)"]
    if "parameters.png" in page:  # figures need matplotlib
        caption = _figure_caption(page, "parameters.png")
        assert "feature party A1; feature party A2; party B" in caption
