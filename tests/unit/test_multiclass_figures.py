"""A one-vs-rest report's figures: each class's ROC against the rest, each class training's loss."""

import numpy as np
import pytest

from vfl.ml.curves import one_vs_rest_curves
from vfl.report.figures import figures_for
from vfl.report.html import render

pytest.importorskip("matplotlib", reason="the report's figures need the `report` extra (matplotlib)")


def summary() -> dict:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300).astype(float)
    p = rng.random((300, 3))
    p[np.arange(300), labels.astype(int)] += 1.0  # each row's own class scores higher
    p /= p.sum(axis=1, keepdims=True)
    names = ["0", "1", "2"]
    return {
        "title": "mc", "state": "succeeded", "multiclass": {
            "classes": names,
            "per_class": [{"class": n, "loss_history": [0.69, 0.5 - 0.05 * k], "metrics": {}} for k, n in enumerate(names)]},
        "curves": one_vs_rest_curves(labels, p, [0.0, 1.0, 2.0]), "curve_split": "train",
        "metrics": {"train": {"macro_auc": 0.9, "per_class": {n: {"auc": 0.9} for n in names}}},
        "learned": [], "alignment": None, "timings": {}, "config": {},
    }


def test_the_curves_are_one_roc_per_class_on_the_normalised_probabilities():
    curves = summary()["curves"]

    assert curves["kind"] == "roc_per_class" and [c["class"] for c in curves["classes"]] == ["0", "1", "2"]
    for c in curves["classes"]:
        assert c["fpr"][0] == 0.0 and c["tpr"][-1] == 1.0 and c["positives"] + c["negatives"] == 300
        # better than chance: each class's own rows score higher
        assert np.trapezoid(c["tpr"], c["fpr"]) > 0.7


def test_figures_for_a_one_vs_rest_summary_draws_both_and_the_page_inlines_them():
    s = summary()

    figures = figures_for(s)
    page = render(s, figures)

    assert set(figures) == {"class_roc.png", "class_losses.png"}
    assert all(png.startswith(b"\x89PNG") for png in figures.values())
    assert 'alt="class_roc.png"' in page and 'alt="class_losses.png"' in page
