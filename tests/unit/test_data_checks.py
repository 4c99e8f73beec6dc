"""ID profiles and rewrites, label-leakage checks and Windows/Excel file messages: each one's rule."""

from __future__ import annotations

import numpy as np
import pytest

from vfl.data.formats import file_problem, read_text
from vfl.data.ids import explain_mismatch, likely_causes, mismatch_warning, profile_ids
from vfl.data.leakage import column_leaks, perfect_model, score_leak
from vfl.data.table import load_csv
from vfl.errors import ConfigError, DataError


def test_simulate_names_the_rewrite_that_would_match_the_zero_padded_ids():
    ids_b = [str(i) for i in range(569)]
    ids_a = [str(i).zfill(3) for i in range(569)]

    text = explain_mismatch(ids_b, ids_a, "guest.csv", "host.csv")

    assert text.startswith("469 of 569 IDs matched between guest.csv and host.csv; 100 more of host.csv's IDs match "
                           "after removing leading zeros (e.g. '99' ↔ '099')")
    assert "--id-normalize strip-leading-zeros" in text


def test_an_ordinary_partial_overlap_is_not_a_warning():
    assert explain_mismatch([str(i) for i in range(100)], [str(i) for i in range(50, 300)], "b", "a") is None


@pytest.mark.parametrize("theirs, cause", [
    ([str(i).zfill(3) for i in range(500)], "leading zeros"),
    ([f"{i}.0" for i in range(500)], "a '.0' suffix"),
    ([f"CUST{i}" for i in range(500)], "a prefix"),
])
def test_profiles_name_the_likely_cause(theirs, cause):
    mine = profile_ids([str(i) for i in range(500)])

    causes = likely_causes(mine, profile_ids(theirs), who="party-a")

    assert len(causes) == 1 and causes[0].startswith(cause)


def test_a_profile_holds_shares_and_lengths_but_no_id():
    ids = [f"SECRET{i:05d}" for i in range(1000)]

    profile = profile_ids(ids)

    assert not any("SECRET" in str(v) for v in profile.values())
    assert profile["count"] == 1000 and profile["share_letter_first"] == 1.0 and profile["common_lengths"] == [11]


def test_a_small_intersection_with_alike_profiles_gets_the_checklist_only_below_half():
    same = profile_ids([str(i) for i in range(100)])

    assert mismatch_warning(80, 100, 100, same, same, who="party-a") is None
    assert "check how each party writes its IDs" in mismatch_warning(30, 100, 100, same, same, who="party-a")


def test_a_copy_of_the_label_and_a_column_named_like_it_are_found():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200).astype(float)
    X = np.column_stack([rng.normal(size=200), labels * 3 + 1, rng.normal(size=200)])

    warnings = column_leaks(["income", "flag", "Default"], X, labels, "default", "shop.csv")

    assert len(warnings) == 2
    assert "'flag' alone separates the classes" in warnings[0] and "'Default' is named like the label" in warnings[1]


def test_a_separating_partial_score_and_a_perfect_auc_are_warned_about():
    labels = np.array([0.0] * 20 + [1.0] * 20)

    assert "party A's part of the model alone separates" in score_leak("A", labels * 2, labels, "validation")
    assert score_leak("A", np.arange(40.0) % 3, labels, "validation") is None
    assert "AUC is 1.0000" in perfect_model({"validation": {"auc": 1.0}})
    assert score_leak("A", labels[:6], labels[:6], "validation") is None  # too few rows to say anything


def test_an_excel_workbook_a_folder_and_utf16_given_as_a_csv_are_named(tmp_path):
    (tmp_path / "book.csv").write_bytes(b"PK\x03\x04rest of a zip")
    (tmp_path / "u16.csv").write_bytes("id,x\n".encode("utf-16"))
    (tmp_path / "folder").mkdir()

    for name, words in (("book.csv", "Excel workbook (.xlsx)"), ("u16.csv", "UTF-16"), ("folder", "is a folder")):
        with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")):
            load_csv(tmp_path / name, id_column="id")


def test_a_byte_order_mark_and_crlf_are_accepted(tmp_path):
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfid,x\r\n1,2\r\n")
    (tmp_path / "bom.toml").write_bytes(b'\xef\xbb\xbfa = "b"\r\n')

    table = load_csv(tmp_path / "bom.csv", id_column="id")

    assert table.ids == ["1"] and table.feature_names == ["x"]
    assert read_text(tmp_path / "bom.toml", "TOML config file") == 'a = "b"\r\n'
    assert file_problem(tmp_path / "bom.csv") is None


def test_a_service_config_saved_as_a_workbook_is_named(tmp_path):
    from vfl.service.config import load_config

    (tmp_path / "party.toml").write_bytes(b"PK\x03\x04")

    with pytest.raises(ConfigError, match="looks like an Excel workbook"):
        load_config(tmp_path / "party.toml")


def test_a_feature_party_finds_its_own_columns_named_like_a_label():
    from vfl.data.leakage import label_like_columns

    assert label_like_columns(["income", "Target", "is_default", "y", "city=y"]) == ["Target", "y"]
