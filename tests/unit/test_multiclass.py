"""Multi-class labels: which labels train one-vs-rest, the messages for the rest, and the metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from vfl.data.table import LabelHints, check_labels, from_dataframe
from vfl.errors import DataError
from vfl.ml.multiclass import is_multiclass, multiclass_metrics, normalise, one_vs_rest, predicted_classes


def test_four_whole_number_classes_are_accepted_as_multiclass():
    labels = np.array([0.0, 1, 2, 3, 1, 2])

    check_labels(labels, "logistic", "b.csv", "y")

    assert is_multiclass(labels, "logistic")
    assert not is_multiclass(labels, "linear")
    assert not is_multiclass(np.array([0.0, 1, 1]), "logistic")


def test_a_one_two_label_suggests_one_to_zero_and_two_to_one():
    with pytest.raises(DataError, match="values 1, 2.*1 → 0, 2 → 1"):
        check_labels(np.array([1.0, 2, 2, 1]), "logistic", "b.csv", "y")


def test_a_continuous_label_is_said_to_look_numeric_with_its_distinct_count():
    labels = np.linspace(-1.2, 3.0, 800)

    with pytest.raises(DataError, match=r"looks numeric \(800 distinct values") as info:
        check_labels(labels, "logistic", "b.csv", "motor_speed")

    assert "--model linear" in str(info.value)


def test_more_classes_than_the_cap_are_refused_naming_the_setting():
    with pytest.raises(DataError, match="25 distinct values.*at most 20 classes.*training.max_classes"):
        check_labels(np.arange(25.0), "logistic", "b.csv", "y", max_classes=20)


def test_a_service_answer_names_the_json_key_and_the_config_key_not_cli_flags():
    hints = LabelHints.for_service("credit")

    with pytest.raises(DataError) as info:
        check_labels(np.linspace(0, 1, 50), "logistic", "b.csv", "y", hints=hints)

    message = str(info.value)
    assert '"training": {"model": "linear"}' in message
    assert "datasets.credit.label_column" in message
    assert "--model" not in message and "--label-column" not in message


def test_class_names_in_text_are_numbered_in_sorted_order():
    frame = pd.DataFrame({"id": ["1", "2", "3", "4"], "y": ["van", "bus", "saab", "van"], "f": [1.0, 2, 3, 4]})

    table = from_dataframe(frame, id_column="id", label_column="y", model="logistic")

    assert table.label_mapping == {"bus": 0, "saab": 1, "van": 2}
    assert table.labels.tolist() == [2.0, 0.0, 1.0, 2.0]


def test_normalised_probabilities_sum_to_one_and_pick_the_largest_class():
    per_class = np.array([[0.9, 0.2, 0.1], [0.1, 0.1, 0.6], [0.0, 0.0, 0.0]])

    p = normalise(per_class)

    assert np.allclose(p.sum(axis=1), 1.0)
    assert predicted_classes(p, [0.0, 1.0, 2.0]).tolist()[:2] == [0.0, 2.0]
    assert np.allclose(p[2], 1 / 3)


def test_macro_auc_and_per_class_figures_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300).astype(float)
    p = normalise(rng.random((300, 4)) + 0.6 * np.eye(4)[y.astype(int)])

    metrics = multiclass_metrics(y, p, [0.0, 1.0, 2.0, 3.0])

    assert metrics["macro_auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert metrics["per_class"]["2"]["auc"] == pytest.approx(roc_auc_score(one_vs_rest(y, 2.0), p[:, 2]))
    assert metrics["accuracy"] == pytest.approx(np.mean(np.argmax(p, axis=1) == y))
    assert sum(c["support"] for c in metrics["per_class"].values()) == 300


def test_a_scorecard_simulation_refuses_a_multiclass_label_as_binary_only():
    from vfl.errors import ConfigError
    from vfl.local.scorecard import simulate_scorecard
    from vfl.ml.config import TrainingConfig
    from vfl.ml.scorecard.config import ScorecardConfig

    ids = [str(i) for i in range(9)]
    table_a = from_dataframe(pd.DataFrame({"id": ids, "a": np.arange(9.0)}), id_column="id")
    table_b = from_dataframe(pd.DataFrame({"id": ids, "y": [0, 1, 2] * 3, "b": np.arange(9.0)}), id_column="id",
                             label_column="y", model="logistic")

    with pytest.raises(ConfigError, match="3 classes; a scorecard is binary only"):
        simulate_scorecard(table_a, table_b, TrainingConfig(key_bits=1024), ScorecardConfig())


def test_contributions_on_a_multiclass_label_are_refused_before_any_alignment():
    from vfl.errors import ConfigError
    from vfl.local.simulate import simulate
    from vfl.ml.config import TrainingConfig

    ids = [str(i) for i in range(9)]
    table_a = from_dataframe(pd.DataFrame({"id": ids, "a": np.arange(9.0)}), id_column="id")
    table_b = from_dataframe(pd.DataFrame({"id": ids, "y": [0, 1, 2] * 3, "b": np.arange(9.0)}), id_column="id",
                             label_column="y", model="logistic")

    with pytest.raises(ConfigError, match="contributions are measured on binary"):
        simulate(table_a, table_b, TrainingConfig(key_bits=1024), contributions=True)


def test_vfl_compare_refuses_a_multiclass_label_and_points_to_simulate():
    from vfl.errors import ConfigError
    from vfl.local.compare import compare

    ids = [str(i) for i in range(30)]
    table_a = from_dataframe(pd.DataFrame({"id": ids, "a": np.arange(30.0)}), id_column="id")
    table_b = from_dataframe(pd.DataFrame({"id": ids, "y": [0, 1, 2] * 10, "b": np.arange(30.0)}), id_column="id",
                             label_column="y", model="logistic")

    with pytest.raises(ConfigError, match="3 classes; vfl compare compares binary and linear models only"):
        compare(table_a, table_b, model="logistic")
