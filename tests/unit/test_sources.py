"""Data sources: CSV, Parquet and SQLite tables, read strictly for training and by ID for serving."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vfl.errors import ConfigError, DataError
from vfl.data.dataset import DatasetSection
from vfl.service.config import load_config
from vfl.data.sources import FileSource, SqlSource, open_source

pytest.importorskip("sqlalchemy")

ROWS = [  # id, f1, f2, y: row C3 has a bad f2 cell, C4 a missing f1 and an infinite f2
    ("C1", "0.5", "2", "1"),
    ("C2", "1.5", "-1", "0"),
    ("C3", "2.5", "abc", "1"),
    ("C4", "", "inf", "0"),
]


def write_csv(path: Path, rows=ROWS, header=("id", "f1", "f2", "y")) -> Path:
    path.write_text(",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def write_sqlite(path: Path, rows=ROWS) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id TEXT, f1 REAL, f2 TEXT, y INTEGER)")
    con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)",
                    [(i, float(a) if a else None, b, int(y)) for i, a, b, y in rows])
    con.commit()
    con.close()
    return path


def sqlite_source(path: Path, **extra) -> SqlSource:
    dataset = DatasetSection(url=f"sqlite:///{path}", table="customers", id_column="id", **extra)
    source = open_source("crm", dataset)
    assert isinstance(source, SqlSource)
    return source


@pytest.fixture(params=["csv", "parquet", "sqlite"])
def source(request, tmp_path):
    if request.param == "csv":
        dataset = DatasetSection(path=write_csv(tmp_path / "party.csv"), id_column="id", label_column="y")
        yield open_source("crm", dataset)
    elif request.param == "parquet":
        pytest.importorskip("pyarrow")
        frame = pd.DataFrame(ROWS, columns=["id", "f1", "f2", "y"])  # text cells, as in the CSV
        frame["y"] = frame["y"].astype(int)
        frame.to_parquet(tmp_path / "party.parquet")
        dataset = DatasetSection(path=tmp_path / "party.parquet", id_column="id", label_column="y")
        assert dataset.kind == "parquet"
        yield open_source("crm", dataset)
    else:
        src = sqlite_source(write_sqlite(tmp_path / "crm.db"), label_column="y")
        yield src
        src.close()


def test_lookup_gives_features_by_name_and_a_status_per_id(source):
    ids = ["C2", "C9", " C1 ", "C3", "C4", ""]

    found = source.lookup(ids, ["f2", "f1"])  # the columns in another order than in the table

    assert found.status == ["ok", "unknown id", "ok", "invalid features: f2", "invalid features: f2, f1",  # in the order asked
                            "unknown id"]
    assert np.array_equal(found.features[0], [-1.0, 1.5])
    assert np.array_equal(found.features[2], [2.0, 0.5])
    assert np.isnan(found.features[[1, 3, 4, 5]]).all()
    assert found.features.shape == (6, 2)
    assert found.ok.tolist() == [True, False, True, False, False, False]


def test_training_table_is_strict_about_the_same_bad_cell(source):
    with pytest.raises(DataError, match="feature column 'f1'|feature column 'f2'") as info:
        source.table()

    assert "crm" in info.value.public


def test_missing_feature_column_is_a_clear_error_not_a_status(source):
    with pytest.raises(DataError, match=r"no (feature )?column.*'income'.*columns are: id, f1, f2, y") as info:
        source.lookup(["C1"], ["f1", "income"])

    assert "income" in info.value.public and "dataset 'crm'" in info.value.public


def test_injection_looking_ids_are_unknown_ids(source):
    ids = ["C1' OR '1'='1", "C1; DROP TABLE customers; --", "C1"]

    found = source.lookup(ids, ["f1"])

    assert found.status == ["unknown id", "unknown id", "ok"]
    assert source.lookup(["C2"], ["f1"]).status == ["ok"]  # the table is still there


def test_csv_rereads_a_changed_file_and_its_index(tmp_path):
    path = write_csv(tmp_path / "party.csv")
    source = open_source("crm", DatasetSection(path=path, id_column="id"))
    assert source.lookup(["C5"], ["f1"]).status == ["unknown id"]

    write_csv(path, ROWS + [("C5", "7", "8", "1")])
    os.utime(path, (1_000_000, 1_000_000))  # a different mtime even within the filesystem's resolution
    found = source.lookup(["C5"], ["f1"])

    assert found.status == ["ok"] and found.features[0, 0] == 7.0


def test_csv_table_is_cached_until_the_file_changes(tmp_path):
    path = write_csv(tmp_path / "party.csv", ROWS[:2])
    source = open_source("crm", DatasetSection(path=path, id_column="id", label_column="y"))

    first = source.table("logistic")
    again = source.table("logistic")
    write_csv(path, ROWS[:1] + [("C7", "1", "1", "0")])
    os.utime(path, (2_000_000, 2_000_000))
    changed = source.table("logistic")

    assert again is first
    assert changed.ids == ["C1", "C7"]


def test_a_file_is_not_kept_as_text_once_the_table_or_the_lookup_view_is_built(tmp_path):
    path = write_csv(tmp_path / "party.csv", ROWS[:2])
    source = open_source("crm", DatasetSection(path=path, id_column="id", label_column="y"))

    table = source.table()
    assert source._state.frame is None  # the raw text frame is the largest thing a source could hold
    found = source.lookup(["C2", "C1"], ["f1"])  # the file is read again for the lookup view
    assert source._state.frame is None

    assert found.status == ["ok", "ok"] and found.features[:, 0].tolist() == [1.5, 0.5]
    assert source.table() is table  # still the cached table
    assert list(source.iter_ids()) == ["C1", "C2"]


def test_label_check_runs_for_a_model_asked_after_the_first_load(tmp_path):
    path = write_csv(tmp_path / "party.csv", [("C1", "1", "2", "1"), ("C2", "2", "3", "1")])
    source = open_source("crm", DatasetSection(path=path, id_column="id", label_column="y"))
    source.table()  # no model: no label check

    with pytest.raises(DataError, match="only the class 1"):
        source.table("logistic")


def test_duplicated_id_is_its_own_status(tmp_path):
    path = write_csv(tmp_path / "party.csv", ROWS[:2] + [("C1", "9", "9", "0")])
    source = open_source("crm", DatasetSection(path=path, id_column="id"))

    assert source.lookup(["C1", "C2"], ["f1"]).status == ["duplicated id", "ok"]


def test_missing_file_names_the_dataset_for_peers(tmp_path):
    source = open_source("crm", DatasetSection(path=tmp_path / "gone.csv", id_column="id"))

    with pytest.raises(DataError, match="gone.csv") as info:
        source.lookup(["C1"], ["f1"])

    assert "gone.csv" not in info.value.public and "dataset 'crm'" in info.value.public


def test_parquet_is_chosen_by_suffix_and_keeps_integer_ids(tmp_path):
    pytest.importorskip("pyarrow")
    pd.DataFrame({"id": [7, 8], "f1": [0.25, np.nan]}).to_parquet(tmp_path / "p.pq")
    source = open_source("p", DatasetSection(path=tmp_path / "p.pq", id_column="id"))

    found = source.lookup(["7", "007", "8"], ["f1"])

    assert isinstance(source, FileSource)
    assert found.status == ["ok", "unknown id", "invalid features: f1"]
    assert found.features[0, 0] == 0.25


def test_not_a_parquet_file_is_a_data_error(tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "p.parquet").write_text("id,f1\n1,2\n")
    source = open_source("p", DatasetSection(path=tmp_path / "p.parquet", id_column="id"))

    with pytest.raises(DataError, match="not a valid Parquet file"):
        source.table()


# -- SQLite ----------------------------------------------------------------------------------------


def test_sqlite_rows_inserted_later_are_found_without_a_reload(tmp_path):
    db = write_sqlite(tmp_path / "crm.db")
    source = sqlite_source(db)
    assert source.lookup(["C8"], ["f1", "f2"]).status == ["unknown id"]

    con = sqlite3.connect(db)
    con.execute("INSERT INTO customers VALUES ('C8', 3.0, '4', 1)")
    con.commit()
    con.close()
    found = source.lookup(["C8"], ["f1", "f2"])

    assert found.status == ["ok"]
    assert found.features.tolist() == [[3.0, 4.0]]
    source.close()


def test_sqlite_lookup_is_chunked(tmp_path):
    db = tmp_path / "big.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, f1 REAL)")
    con.executemany("INSERT INTO customers VALUES (?, ?)", [(i, i / 2) for i in range(1, 1001)])
    con.commit()
    con.close()
    source = SqlSource("big", DatasetSection(url=f"sqlite:///{db}", table="customers", id_column="id"), chunk=7)
    ids = [str(i) for i in range(1000, 0, -1)] + ["0", "1001", "01"]

    found = source.lookup(ids, ["f1"])

    assert found.status[:1000] == ["ok"] * 1000 and found.status[1000:] == ["unknown id"] * 3
    assert np.array_equal(found.features[:1000, 0], np.arange(1000, 0, -1) / 2)
    source.close()


def test_sqlite_table_checks_like_a_csv(tmp_path):
    good = [r for r in ROWS if r[0] in ("C1", "C2")]
    source = sqlite_source(write_sqlite(tmp_path / "crm.db", good), label_column="y")

    table = source.table("logistic")

    assert table.ids == ["C1", "C2"]
    assert table.feature_names == ["f1", "f2"]
    assert np.array_equal(table.features, [[0.5, 2.0], [1.5, -1.0]])
    assert np.array_equal(table.labels, [1.0, 0.0])
    source.close()


def test_sqlite_missing_table_and_missing_file(tmp_path):
    db = write_sqlite(tmp_path / "crm.db")
    wrong_table = SqlSource("crm", DatasetSection(url=f"sqlite:///{db}", table="clients", id_column="id"))
    no_file = SqlSource("crm", DatasetSection(url=f"sqlite:///{tmp_path}/nope.db", table="customers", id_column="id"))

    with pytest.raises(DataError, match="table does not exist.*'clients'.*check table"):
        wrong_table.lookup(["C1"], ["f1"])
    with pytest.raises(DataError, match="does not exist; check the url"):
        no_file.lookup(["C1"], ["f1"])
    assert not (tmp_path / "nope.db").exists()  # SQLite would have created an empty file


def test_a_column_name_cannot_inject_sql(tmp_path):
    source = sqlite_source(write_sqlite(tmp_path / "crm.db"))

    with pytest.raises(DataError, match="no feature column"):
        source.lookup(["C1"], ["f1 FROM customers; DROP TABLE customers; --"])

    assert source.lookup(["C1"], ["f1"]).status == ["ok"]
    source.close()


def test_password_never_appears_in_errors(monkeypatch):
    pytest.importorskip("psycopg", reason="a postgresql+psycopg URL needs vfl[postgres]")
    monkeypatch.setenv("VFL_TEST_DB_PASSWORD", "s3cret-pw")
    # Nothing listens on port 1: the connection is refused.
    dataset = DatasetSection(url="postgresql+psycopg://vfl:${VFL_TEST_DB_PASSWORD}@127.0.0.1:1/bank?connect_timeout=2",
                             table="customers", id_column="id")
    source = open_source("bank", dataset)

    with pytest.raises(DataError) as info:
        source.lookup(["C1"], ["f1"])

    message = str(info.value)
    assert "s3cret-pw" not in message and "s3cret-pw" not in (info.value.public or "")
    assert "dataset 'bank'" in message and "***" in message  # the redacted URL names the server for operators
    assert "127.0.0.1" not in info.value.public
    source.close()


def test_unset_environment_variable_in_url_is_a_config_error(monkeypatch):
    monkeypatch.delenv("VFL_NOT_SET", raising=False)
    dataset = DatasetSection(url="postgresql+psycopg://vfl:${VFL_NOT_SET}@db/bank", table="t", id_column="id")

    with pytest.raises(ConfigError, match="VFL_NOT_SET is not set"):
        open_source("bank", dataset).lookup(["1"], ["f"])


# -- config -------------------------------------------------------------------------------------------


def test_config_resolves_a_relative_sqlite_path_and_checks_the_choice(tmp_path):
    write_sqlite(tmp_path / "crm.db")
    base = '[party]\nid = "shop"\nrole = "A"\ndata_dir = "d"\napi_token = "0123456789abcdef"\ninsecure = true\n'
    (tmp_path / "good.toml").write_text(
        base + '[datasets.crm]\nurl = "sqlite:///crm.db"\ntable = "customers"\nid_column = "id"\n')
    (tmp_path / "bad.toml").write_text(base + '[datasets.crm]\nurl = "sqlite:///crm.db"\nid_column = "id"\n')

    config = load_config(tmp_path / "good.toml")

    assert config.datasets["crm"].url == f"sqlite:///{tmp_path}/crm.db"
    assert config.datasets["crm"].kind == "sql"
    assert open_source("crm", config.datasets["crm"], max_bytes=config.limits.max_csv_bytes).lookup(["C1"], ["f1"]).status == ["ok"]
    with pytest.raises(ConfigError, match='datasets.crm.*table = "customers"'):
        load_config(tmp_path / "bad.toml")


@pytest.mark.parametrize("fields, problem", [
    ({}, "a dataset needs path"),
    ({"path": "a.csv", "url": "sqlite:///a.db", "table": "t"}, "not both"),
    ({"url": "a.db", "table": "t"}, "SQLAlchemy URL"),
    ({"path": "a.csv", "schema": "crm"}, "schema applies to a database table"),
])
def test_dataset_section_says_what_to_write(fields, problem):
    with pytest.raises(ValueError, match=problem):
        DatasetSection.model_validate({"id_column": "id", **fields})


def test_a_service_serves_lookups_from_its_configured_sources_and_closes_them(tmp_path):
    from vfl.service.config import ServiceConfig
    from vfl.service.datasets import Datasets

    db = write_sqlite(tmp_path / "crm.db")
    csv = write_csv(tmp_path / "shop.csv", ROWS[:2], header=("id", "f1", "f2", "spend"))
    config = ServiceConfig.model_validate({
        "party": {"id": "shop", "role": "A", "data_dir": str(tmp_path / "data"), "api_token": "0123456789abcdef",
                  "insecure": True},
        "datasets": {"crm": {"url": f"sqlite:///{db}", "table": "customers", "id_column": "id"},
                     "shop": {"path": str(csv), "id_column": "id"}},
    })
    datasets = Datasets(config)

    found = datasets.lookup("crm", ["C2", "C3"], ["f1"])
    table = datasets.table("shop")
    crm = datasets.source("crm")
    assert datasets.source("crm") is crm and crm._engine is not None
    datasets.close()

    assert found.status == ["ok", "ok"] and found.features[:, 0].tolist() == [1.5, 2.5]
    assert table.ids == ["C1", "C2"] and table.feature_names == ["f1", "f2", "spend"]
    assert crm._engine is None  # the pool was disposed
    with pytest.raises(DataError, match="no dataset named 'other'; it has: crm, shop"):
        datasets.source("other")


# -- streamed IDs ---------------------------------------------------------------------------------------

STREAM_IDS = ["  C1", "C2  ", "007", "7", "x y", "é-ü", "C10", "c1", "0", "Z"]  # spaces, zero padding, case, UTF-8


def _stream_source(kind: str, tmp_path: Path, ids=STREAM_IDS):
    """A source of ``ids`` (with two numeric features), its rows in that order."""
    rows = [(i, str(k / 2), str(k)) for k, i in enumerate(ids)]
    if kind == "csv":
        lines = ['"' + i + '",' + a + "," + b for i, a, b in rows]  # quoted, so the surrounding spaces are in the cell
        path = tmp_path / "party.csv"
        path.write_text("id,f1,f2\n" + "".join(line + "\n" for line in lines), encoding="utf-8")
        return open_source("crm", DatasetSection(path=path, id_column="id"))
    if kind == "parquet":
        pytest.importorskip("pyarrow")
        frame = pd.DataFrame(rows, columns=["id", "f1", "f2"]).astype({"f1": float, "f2": float})
        frame.to_parquet(tmp_path / "party.parquet")
        return open_source("crm", DatasetSection(path=tmp_path / "party.parquet", id_column="id"))
    db = tmp_path / "crm.db"
    con = sqlite3.connect(db)
    # A TEXT primary key: SQLite answers SELECT id from its index, in ID order, not in insertion order.
    con.execute("CREATE TABLE customers (id TEXT PRIMARY KEY, f1 REAL, f2 REAL)")
    con.executemany("INSERT INTO customers VALUES (?, ?, ?)", [(i, float(a), float(b)) for i, a, b in rows])
    con.commit()
    con.close()
    return sqlite_source(db)


@pytest.mark.parametrize("kind", ["csv", "parquet", "sqlite"])
@pytest.mark.parametrize("chunk_rows", [1, 3, 100])
def test_streamed_ids_are_the_tables_ids_in_its_order(kind, chunk_rows, tmp_path):
    source = _stream_source(kind, tmp_path)

    streamed = list(source.iter_ids(chunk_rows))  # before the table is loaded: from the file / the database
    table = source.table()
    again = list(source.iter_ids(chunk_rows))  # a fresh pass, now from the loaded table for a file

    assert streamed == table.ids == again
    assert sorted(streamed) == sorted(i.strip() for i in STREAM_IDS)
    assert all(isinstance(i, str) for i in streamed)
    source.close()


def test_streamed_integer_ids_follow_the_id_rule(tmp_path):
    pytest.importorskip("pyarrow")
    pd.DataFrame({"id": [7, 12, 3], "f1": [1.0, 2.0, 3.0]}).to_parquet(tmp_path / "p.parquet")
    parquet = open_source("p", DatasetSection(path=tmp_path / "p.parquet", id_column="id"))
    db = tmp_path / "n.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, f1 REAL)")
    con.executemany("INSERT INTO customers VALUES (?, ?)", [(7, 1.0), (12, 2.0), (3, 3.0)])
    con.commit()
    con.close()
    sql = sqlite_source(db)

    assert list(parquet.iter_ids()) == parquet.table().ids == ["7", "12", "3"]
    assert list(sql.iter_ids(2)) == sql.table().ids == ["3", "7", "12"]  # a database table is read in ID order
    sql.close()


def test_sqlite_table_and_stream_share_the_id_order_whatever_the_insertion_order(tmp_path):
    db = tmp_path / "crm.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE customers (id TEXT, f1 REAL)")  # no key, no index: a plain table scan
    con.executemany("INSERT INTO customers VALUES (?, ?)", [("b", 1.0), ("a", 2.0), ("c", 3.0)])
    con.commit()
    con.close()
    source = sqlite_source(db)

    table = source.table()

    assert table.ids == list(source.iter_ids()) == ["a", "b", "c"]
    assert table.features[:, 0].tolist() == [2.0, 1.0, 3.0]  # the rows moved with their IDs
    source.close()


@pytest.mark.parametrize("kind", ["csv", "parquet", "sqlite"])
def test_streaming_a_table_without_rows_is_the_tables_error(kind, tmp_path):
    source = _stream_source(kind, tmp_path, ids=[])
    if kind == "csv":
        assert source.path.read_text() == "id,f1,f2\n"  # a header-only file

    with pytest.raises(DataError, match="header but no data rows") as from_table:
        source.table()
    with pytest.raises(DataError, match="header but no data rows") as from_stream:
        list(source.iter_ids())

    assert str(from_stream.value) == str(from_table.value)
    assert "dataset 'crm'" in from_stream.value.public
    source.close()


@pytest.mark.parametrize("kind", ["csv", "parquet", "sqlite"])
def test_streaming_names_a_missing_id_column_and_a_missing_id(kind, tmp_path):
    source = _stream_source(kind, tmp_path, ids=["C1", " "])
    with pytest.raises(DataError, match=r"ID at row \d is empty") as from_table:
        source.table()
    with pytest.raises(DataError, match=r"ID at row \d is empty") as from_stream:
        list(source.iter_ids())
    assert str(from_stream.value) == str(from_table.value)

    source.dataset = source.dataset.model_copy(update={"id_column": "key"})
    source.close()
    with pytest.raises(DataError, match="no ID column 'key'") as info:
        list(source.iter_ids())
    assert "dataset 'crm'" in info.value.public
    source.close()


def test_psi_on_streamed_ids_gives_the_rows_of_the_id_lists(tmp_path):
    from psi import PsiIds, run_psi

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ids_a = [f"u{i:03d}" for i in range(0, 130)]
    ids_b = [f" u{i:03d}" for i in range(70, 180, 2)][::-1] + ["007"]  # spaces, and B in another order
    src_a = _stream_source("csv", tmp_path / "a", ids=ids_a)
    src_b = _stream_source("sqlite", tmp_path / "b", ids=ids_b)
    table_a, table_b = src_a.table(), src_b.table()
    src_a.close()  # the file is streamed again, not served from the loaded table

    # Spilled under the test's own folder: nothing is left in the system's temporary folder.
    streamed = run_psi(PsiIds(read=lambda: src_a.iter_ids(), source="a", spill_dir=tmp_path / "spill-a"),
                       PsiIds(read=lambda: src_b.iter_ids(), source="b", spill_dir=tmp_path / "spill-b"),
                       key_bits=1024, min_key_bits=1024, workers=1, bucket_ids=50)
    listed = run_psi(table_a.ids, table_b.ids, key_bits=1024, min_key_bits=1024, workers=1)

    assert streamed.buckets == 3 and listed.buckets == 1
    np.testing.assert_array_equal(streamed.rows_a, listed.rows_a)
    np.testing.assert_array_equal(streamed.rows_b, listed.rows_b)
    assert [table_a.ids[i] for i in streamed.rows_a] == [table_b.ids[i] for i in streamed.rows_b]
    assert len(streamed.rows_a) == 30
    src_b.close()


def test_a_jobs_own_preparation_gives_its_own_table_and_serving_reads_its_new_categorical_column(tmp_path):
    from vfl.ml.prep import PrepConfig

    rows = [("C1", "1", "2", "1"), ("C2", "2", "3", "0"), ("C3", "3", "", "1"), ("C4", "1", "5", "0")]
    path = write_csv(tmp_path / "party.csv", rows, header=("id", "region", "f2", "y"))
    source = open_source("crm", DatasetSection(path=path, id_column="id", label_column="y", impute="mean"))
    job = PrepConfig(impute="median", missing_indicator=True, categorical={"region": "onehot"})

    own = source.table("logistic")
    prepared = source.table("logistic", job)
    again = source.table("logistic", job)
    found = source.prepared_lookup(["C4", "C3", "C9"], prepared.preparation.fitted(prepared.features))

    assert own.feature_names == ["region", "f2"]  # the dataset's keys: no encoding, no indicator
    assert prepared.feature_names == ["region=1", "region=2", "region=3", "f2", "f2 (missing)"]
    assert again is prepared and source.table("logistic") is own  # each kept, neither replaces the other
    assert found.status == ["ok", "ok", "unknown id"]  # region is read as categories though the dataset names none
    assert found.features[0].tolist() == [1.0, 0.0, 0.0, 5.0, 0.0]
    assert found.features[1].tolist() == [0.0, 0.0, 1.0, 3.0, 1.0]  # f2 filled with the median of 2, 3, 5
