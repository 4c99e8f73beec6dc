"""Every bad input gives one DataError naming the file, the column and the fix."""

import numpy as np
import pandas as pd
import pytest

from vfl.data.table import from_dataframe, load_csv
from vfl.errors import DataError


def write(tmp_path, text, name="party.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_file_loads_with_ids_as_text(tmp_path):
    path = write(tmp_path, "id,y,f1,f2\n007,1,0.5,2\n7,0,1.5,-1\n")

    table = load_csv(path, id_column="id", label_column="y", model="logistic")

    assert table.ids == ["007", "7"]
    assert table.feature_names == ["f1", "f2"]
    assert np.array_equal(table.features, [[0.5, 2.0], [1.5, -1.0]])
    assert np.array_equal(table.labels, [1.0, 0.0])


@pytest.mark.parametrize(
    "text, kwargs, problem",
    [
        ("", {}, "empty"),
        ("id,f1\n", {}, "no data rows"),
        ("id,f1\n1,2\n", {"id_column": "ID"}, "no ID column 'ID'.*columns are: id, f1"),
        ("id,f1\n1,2\n", {"label_column": "y"}, "no label column 'y'"),
        ("id,f1\n1,2\n1,3\n", {}, "duplicated ID.*'1' ×2"),
        ("id,f1\n1,2\n ,3\n", {}, "ID at row 1 is empty"),
        ("id,f1\n1,2\n2,abc\n", {}, "feature column 'f1' is not numeric.*'abc'.*ID '2'"),
        ("id,f1\n1,2\n2,\n", {}, "feature column 'f1' has 1 missing.*ID '2'"),
        ("id,f1\n1,2\n2,NaN\n", {}, "missing or NaN"),
        ("id,f1\n1,2\n2,inf\n", {}, "infinite for ID '2'"),
        ("id,y\n1,0\n2,1\n", {"label_column": "y"}, "no feature columns"),
        ("id,y,f1\n1,2,0\n2,1,1\n", {"label_column": "y", "model": "logistic"}, "values 1, 2.*labels 0 and 1.*1 → 0, 2 → 1"),
        ("id,y,f1\n1,1,0\n2,1,1\n", {"label_column": "y", "model": "logistic"}, "only the class 1"),
        ("id,y,f1\n1,a,0\n2,1,1\n", {"label_column": "y", "model": "linear"}, "label column 'y' is not numeric"),
        ('id,f1\n1,"2\n', {}, "not a valid CSV"),
        ("id,f1,f1\n1,2,3\n", {}, "\\['f1'\\] appear more than once"),
    ],
    ids=[
        "empty-file", "header-only", "missing-id-column", "missing-label-column", "duplicate-ids", "empty-id",
        "text-feature", "missing-feature", "nan-feature", "inf-feature", "no-features", "non-binary-label",
        "one-class", "text-label", "broken-quoting", "duplicate-column",
    ],
)
def test_bad_csv_gives_a_data_error_naming_the_problem(tmp_path, text, kwargs, problem):
    path = write(tmp_path, text)
    args = {"id_column": "id", **kwargs}

    with pytest.raises(DataError, match=problem) as info:
        load_csv(path, **args)

    if text:
        assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_csv(tmp_path / "nope.csv", id_column="id")


def test_oversized_file_is_refused_before_reading(tmp_path):
    path = write(tmp_path, "id,f1\n" + "1,2\n" * 100)

    with pytest.raises(DataError, match="exceeds the limit"):
        load_csv(path, id_column="id", max_bytes=100)


def test_dataframe_input_is_not_modified():
    frame = pd.DataFrame({"id": [1, 2, 3], "f": [1.0, 2.0, 3.0]})
    before = frame.copy()

    table = from_dataframe(frame, id_column="id")

    pd.testing.assert_frame_equal(frame, before)
    assert table.ids == ["1", "2", "3"]


def test_rows_for_unknown_ids_names_them(tmp_path):
    table = load_csv(write(tmp_path, "id,f1\na,1\nb,2\n"), id_column="id")

    assert list(table.rows_for(["b", "a"])) == [1, 0]
    with pytest.raises(DataError, match="unknown ID.*'zz'"):
        table.rows_for(["a", "zz"])


@pytest.mark.parametrize("separator, named", [(";", "';'"), ("\t", "tabs"), ("|", "'|'")])
def test_a_file_with_another_separator_is_named_as_such_not_as_a_wrong_id_column(tmp_path, separator, named):
    path = write(tmp_path, separator.join(["id", "x1", "x2"]) + "\n" + separator.join(["a", "1", "2"]) + "\n")

    with pytest.raises(DataError) as caught:
        load_csv(path, id_column="id")

    message = str(caught.value)
    header = repr(separator.join(["id", "x1", "x2"]))
    assert f"the header is one column {header}: the file seems to use {named} between columns" in message
    assert "save it comma-separated" in message.lower() and f"sep={separator!r}" in message
    assert "--id-column" not in message


@pytest.mark.parametrize("labels, mapping", [
    (["yes", "no", "Yes", "NO"], {"yes": 1, "no": 0, "Yes": 1, "NO": 0}),
    (["true", "false", "TRUE", "False"], {"true": 1, "false": 0, "TRUE": 1, "False": 0}),
    (["Y", "N", "y", "n"], {"Y": 1, "N": 0, "y": 1, "n": 0}),
    (["yes", "0", "1", "no"], {"yes": 1, "no": 0}),  # words mixed with 0 and 1
])
def test_yes_no_labels_are_read_as_1_and_0_and_the_mapping_is_kept(tmp_path, caplog, labels, mapping):
    rows = "".join(f"r{i},{label},{i}\n" for i, label in enumerate(labels))
    path = write(tmp_path, "id,default,x\n" + rows)

    with caplog.at_level("INFO", logger="vfl.data.table"):
        table = load_csv(path, id_column="id", label_column="default", model="logistic")

    assert table.labels.tolist() == [1.0 if v.lower() in ("yes", "true", "y", "1") else 0.0 for v in labels]
    assert table.label_mapping == mapping
    assert table.take(np.array([1, 0])).label_mapping == mapping
    assert "label column 'default' holds text labels, read as" in caplog.text


def test_other_text_labels_are_refused_with_the_values_seen(tmp_path):
    # Two words that are not yes/no (three or more class names train one-vs-rest: tests/unit/test_multiclass.py).
    path = write(tmp_path, "id,default,x\na,good,1\nb,bad,2\nc,good,3\nd,bad,4\n")

    with pytest.raises(DataError) as caught:
        load_csv(path, id_column="id", label_column="default", model="logistic")

    message = str(caught.value)
    assert "the values seen are 'bad', 'good'" in message
    assert "labels 0 and 1" in message and "yes/no, true/false, y/n" in message
    assert "leave the column out" not in message


def test_a_yes_no_label_for_linear_regression_points_to_logistic(tmp_path):
    path = write(tmp_path, "id,default,x\na,yes,1\nb,no,2\n")

    with pytest.raises(DataError, match=r"holds text \('no', 'yes'\); linear regression needs a numeric target. "
                                        r"For a yes/no label use --model logistic"):
        load_csv(path, id_column="id", label_column="default", model="linear")


def test_numeric_labels_have_no_mapping(tmp_path):
    table = load_csv(write(tmp_path, "id,y,x\na,1,1\nb,0,2\n"), id_column="id", label_column="y", model="logistic")

    assert table.label_mapping is None and table.labels.tolist() == [1.0, 0.0]


def test_a_missing_yes_no_label_is_still_a_missing_value(tmp_path):
    with pytest.raises(DataError, match="label column 'y' has 1 missing or NaN value"):
        load_csv(write(tmp_path, "id,y,x\na,yes,1\nb,,2\nc,no,3\n"), id_column="id", label_column="y", model="logistic")


def test_simulate_states_the_label_mapping_in_its_result(tmp_path, keypair):
    from vfl.ml.config import TrainingConfig
    from vfl.local.simulate import simulate_csv

    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 2))
    labels = ["Yes" if v > 0 else "No" for v in x[:, 0] + rng.normal(size=40)]
    a = write(tmp_path, "id,a\n" + "".join(f"r{i},{x[i, 1]}\n" for i in range(40)), "a.csv")
    b = write(tmp_path, "id,y,b\n" + "".join(f"r{i},{labels[i]},{x[i, 0]}\n" for i in range(40)), "b.csv")

    result = simulate_csv(str(a), str(b), id_column="id", label_column="y", keypair=keypair, workers=1,
                          config=TrainingConfig(key_bits=1024, epochs=2))

    assert result["label_mapping"] == {"No": 0, "Yes": 1}


def test_a_link_planted_at_the_partial_outputs_name_is_not_written_through(tmp_path):
    """The partial output's name is predictable; a link put there in advance must not redirect the writes."""
    from vfl.data.chunks import Progress, ResultWriter

    victim = tmp_path / "training.csv"
    victim.write_text("id,feature\n1,0.5\n")
    with ResultWriter(tmp_path / "scores.csv", "tag") as writer:
        writer.partial.symlink_to(victim)

        with pytest.raises(OSError):
            writer.append(0, [{"id": "1", "score": 0.5, "label": 1, "status": "ok"}],
                          ["id", "score", "label", "status"])
        writer.resume(Progress())  # a fresh start removes the link itself, never its target

    assert victim.read_text() == "id,feature\n1,0.5\n"
    assert not writer.partial.exists() and not writer.partial.is_symlink()
