"""A dataset in a real PostgreSQL server: lookup by ID, the strict training read, rows added while serving.

The fixture starts a throw-away server (initdb + pg_ctl from /usr/lib/postgresql/*/bin) on a free
loopback port with trust authentication, and stops and deletes it afterwards, even when a test
fails. PostgreSQL refuses to run as root, so as root its programs run as the ``postgres`` user.
Without the binaries (Debian's ``postgresql`` package; ``.ci/run`` installs it) the tests skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")
pytest.importorskip("psycopg")

from vfl.errors import DataError  # noqa: E402
from vfl.data.dataset import DatasetSection  # noqa: E402
from vfl.data.sources import SqlSource, open_source  # noqa: E402
from vfl.demo.services import free_port  # noqa: E402


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    as_user: list[str] = []
    root = tempfile.mkdtemp(prefix="vfl-pg-")
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        if shutil.which("runuser") is None:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        try:
            shutil.chown(root, user="postgres")
        except (LookupError, OSError) as exc:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(f"running as root and cannot hand the data folder to user postgres ({exc})")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = os.path.join(root, "data"), os.path.join(root, "server.log")
    port = free_port()  # kept from other workers' bind(0) until PostgreSQL listens on it
    pg_ctl = [*as_user, str(bin_dir / "pg_ctl"), "-D", data]
    started = False
    try:
        init = subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
                               "--no-sync", "-E", "UTF8"], capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            pytest.skip(f"initdb failed: {init.stderr.strip()[-500:]}")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = subprocess.run([*pg_ctl, "-l", log, "-o", options, "-w", "-t", "60", "start"],
                               capture_output=True, text=True, timeout=90)
        started = True  # even a failed start may leave a server behind: the finalizer stops it
        if start.returncode != 0:
            tail = Path(log).read_text()[-500:] if os.path.exists(log) else start.stderr
            pytest.skip(f"PostgreSQL did not start: {tail.strip()}")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run([*pg_ctl, "stop", "-m", "immediate"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def engine(postgres_url):
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA crm")
        conn.exec_driver_sql(
            "CREATE TABLE crm.customers (id text PRIMARY KEY, f2 numeric, f1 double precision, y integer)")
        conn.exec_driver_sql(
            "INSERT INTO crm.customers VALUES ('C1', 2, 0.5, 1), ('C2', -1, 1.5, 0), ('C3', NULL, 2.5, 1)")
        conn.exec_driver_sql("CREATE TABLE accounts (id bigint PRIMARY KEY, f1 double precision, y integer)")
        conn.exec_driver_sql("INSERT INTO accounts VALUES (7, 0.25, 0), (8, 'Infinity', 1), (9, 1.0, 1)")
    yield engine
    engine.dispose()


def customers(url: str) -> SqlSource:
    dataset = DatasetSection.model_validate(
        {"url": url, "table": "customers", "schema": "crm", "id_column": "id", "label_column": "y"})
    source = open_source("crm", dataset)
    assert isinstance(source, SqlSource)
    return source


def test_lookup_by_id_with_statuses_and_rows_inserted_later(postgres_url, engine):
    source = customers(postgres_url)
    try:
        first = source.lookup(["C2", "C1", "C3", "C4", "C1' OR '1'='1"], ["f1", "f2"])
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO crm.customers VALUES ('C4', 5, 4.5, 0)")
        later = source.lookup(["C4"], ["f1", "f2"])
    finally:
        source.close()

    assert first.status == ["ok", "ok", "invalid features: f2", "unknown id", "unknown id"]
    assert np.array_equal(first.features[:2], [[1.5, -1.0], [0.5, 2.0]])
    assert later.status == ["ok"] and later.features.tolist() == [[4.5, 5.0]]


def test_integer_ids_follow_the_id_rule(postgres_url, engine):
    dataset = DatasetSection(url=postgres_url, table="accounts", id_column="id")
    source = open_source("acc", dataset)
    try:
        found = source.lookup(["7", "007", "8", "9; DROP TABLE accounts", "10"], ["f1"])
        still_there = source.lookup(["9"], ["f1"])
    finally:
        source.close()

    assert found.status == ["ok", "unknown id", "invalid features: f1", "unknown id", "unknown id"]
    assert found.features[0, 0] == 0.25
    assert still_there.status == ["ok"]


def test_training_table_is_strict_and_sees_the_fixed_table(postgres_url, engine):
    source = customers(postgres_url)
    try:
        with pytest.raises(DataError, match="feature column 'f2' has 1 missing.*'C3'") as info:
            source.table("logistic")
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE crm.customers SET f2 = 3 WHERE id = 'C3'")
        table = source.table("logistic")
    finally:
        source.close()

    assert "127.0.0.1" not in info.value.public and "dataset 'crm'" in info.value.public
    assert set(table.ids) >= {"C1", "C2", "C3"}
    assert table.feature_names == ["f2", "f1"]
    assert table.features[table.ids.index("C3")].tolist() == [3.0, 2.5]


def test_missing_column_and_closed_pool_reopens(postgres_url, engine):
    source = customers(postgres_url)
    try:
        with pytest.raises(DataError, match="no feature column 'income'.*its columns are: id, f2, f1, y"):
            source.lookup(["C1"], ["income"])
        source.close()
        reopened = source.lookup(["C1"], ["f1"])  # close() disposed the pool; the next call makes a new one
    finally:
        source.close()

    assert reopened.status == ["ok"]


def test_streamed_ids_are_the_training_tables_ids_in_its_order(postgres_url, engine):
    ids = [f"u{(i * 37) % 500:03d}" for i in range(500)]  # inserted out of ID order
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE streamed (id text PRIMARY KEY, f1 double precision)")
        conn.execute(sqlalchemy.text("INSERT INTO streamed VALUES (:id, :f1)"),
                     [{"id": i, "f1": float(k)} for k, i in enumerate(ids)])
    source = open_source("s", DatasetSection(url=postgres_url, table="streamed", id_column="id"))
    try:
        streamed = list(source.iter_ids(chunk_rows=7))  # a server-side cursor, 7 rows per fetch
        table = source.table()
    finally:
        source.close()

    assert streamed == table.ids == sorted(ids)
    assert table.features[:3, 0].tolist() == [float(ids.index(i)) for i in sorted(ids)[:3]]
