"""Every bad input gives one DataError naming the file, the column and the fix."""

import numpy as np
import pandas as pd
import pytest

from vfl.data import from_dataframe, load_csv
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
        ("id,y,f1\n1,2,0\n2,1,1\n", {"label_column": "y", "model": "logistic"}, "value\\(s\\) 2.*labels 0 and 1"),
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

