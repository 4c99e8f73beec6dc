"""`vfl simulate --scorecard --report R --model-document D` on CSV files, as a user runs it (issue 28)."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd

from tests.conftest import TEST_KEY_BITS
from vfl.cli import main


def credit_files(tmp_path, n: int = 1200, seed: int = 5):
    """A bank (label, utilisation, late payments, noise) and a shop (returns, orders), partly overlapping."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i:05d}" for i in range(n)])
    utilisation, late = rng.beta(2, 3, n), rng.poisson(0.6, n).astype(float)
    returns, orders = rng.beta(1, 8, n), rng.poisson(4, n).astype(float)
    logit = -1.5 + 2.5 * utilisation + 0.5 * late + 4.0 * returns - 0.1 * orders
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    bank = pd.DataFrame({"id": ids, "y": y, "utilisation": utilisation, "late_payments": late,
                         "noise": rng.normal(size=n)}).iloc[:-40]
    shop = pd.DataFrame({"id": ids, "returns": returns, "orders": orders}).iloc[30:].sample(frac=1.0, random_state=1)
    paths = tmp_path / "bank.csv", tmp_path / "shop.csv"
    bank.to_csv(paths[0], index=False)
    shop.to_csv(paths[1], index=False)
    return paths


def test_simulate_scorecard_writes_the_report_and_the_model_document(tmp_path, capsys):
    bank, shop = credit_files(tmp_path)
    out, report, document = tmp_path / "result.json", tmp_path / "report.html", tmp_path / "model.md"

    code = main(["simulate", "--scorecard", "--party-a", str(shop), "--party-b", str(bank), "--id-column", "id",
                 "--key-bits", str(TEST_KEY_BITS), "--validation-fraction", "0.3", "--seed", "2", "--out", str(out),
                 "--report", str(report), "--model-document", str(document), "--quiet"])

    assert code == 0
    printed = capsys.readouterr().out
    assert f"report written to {report}" in printed and f"model document written to {document}" in printed
    card = json.loads(out.read_text())["scorecard"]
    page = report.read_text()
    words = html.unescape(re.sub(r"<[^>]+>", " ", page))
    for anchor in ('id="scorecard-bins"', 'id="scorecard-iv"', 'id="scorecard-points"', 'id="scorecard-partners"',
                   'id="scorecard-bands"', 'alt="scorecard_bands.png"', 'alt="loss.png"'):
        assert anchor in page, anchor
    # every characteristic's IV, exactly; the integer score's AUC
    for c in card["characteristics"]:
        assert f'data-value="{float(c["iv"])!r}"' in page, c["name"]
    assert f'data-value="{float(card["score"]["auc"])!r}"' in page
    low, high = card["partner_ranges"]["A"]
    assert f"{low}" in words and f"{high}" in words
    # B's points rows are there; none of A's bin labels (A's table stays with A)
    assert all(r["label"] in words for r in card["points"]["B"])
    a_labels = {r["label"] for r in card["points"]["A"]} - {r["label"] for r in card["points"]["B"]} - {"missing"}
    assert a_labels and not any(label in words for label in a_labels)

    text = document.read_text()
    for heading in ("## 1. Purpose", "## 2. Data", "## 3. Method", "## 4. Binning and selection", "## 5. Performance",
                    "## 6. Stability", "## 7. Limitations", "## 8. Threat model and disclosure bounds"):
        assert heading in text, heading
    assert "| B (label party) | bank.csv | 1,160 |" in text and "| A (feature party) | shop.csv | 1,170 |" in text
    assert "1,130 applicants are held by every party" in text
    assert "| validation | pooled-data scorecard |" in text and "| validation | party B alone |" in text
    assert f"| A | {low} | {high} |" in text
    assert not any(label in text for label in a_labels)


def test_model_document_needs_scorecard(tmp_path, capsys):
    bank, shop = credit_files(tmp_path, n=200)
    code = main(["simulate", "--party-a", str(shop), "--party-b", str(bank), "--id-column", "id",
                 "--key-bits", str(TEST_KEY_BITS), "--out", str(tmp_path / "r.json"),
                 "--model-document", str(tmp_path / "m.md"), "--quiet"])
    assert code == 2 and "--model-document goes with --scorecard" in capsys.readouterr().err
