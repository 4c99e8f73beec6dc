import math

import numpy as np
import pytest

from vfl.data.ids import normalize_ids
from vfl.errors import DataError


def test_one_rule_for_id_types():
    ids = normalize_ids(["007", 7, np.int64(8), 9.0, " x "], source="t")

    assert ids == ["007", "7", "8", "9", "x"]


@pytest.mark.parametrize("bad", [None, math.nan, "", "   ", 1.5, True, b"\xff"])
def test_unusable_ids_are_errors(bad):
    with pytest.raises(DataError, match="row 1"):
        normalize_ids(["ok", bad], source="t")


def test_duplicates_after_normalisation_are_reported():
    with pytest.raises(DataError, match="'7' ×2"):
        normalize_ids([7, "7"], source="t")


def test_empty_set_is_an_error():
    with pytest.raises(DataError, match="no IDs"):
        normalize_ids([], source="t")
