"""Noise on released partial scores: its accounting, and noise that is fixed per (key, context, ID, feature)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vfl.errors import ConfigError, DataError
from vfl.ml.parts import ModelPartA
from vfl.ml.scaling import Standardizer
from vfl.ml.score_noise import (
    FeatureBox,
    ScoreNoise,
    epsilon,
    key_fingerprint,
    multiplier_for,
    rho_per_person,
    score_sigma,
    standard_normals,
)

SECRET = bytes(range(32))
CONTEXT = ("bank", "behaviour", (2.0).hex())


def ids(count: int, prefix: str = "C") -> list[str]:
    return [f"{prefix}{i:07d}" for i in range(count)]


# -- accounting ------------------------------------------------------------------------------------------------------


def test_one_release_of_n_features_costs_n_over_two_z_squared():
    rho = rho_per_person(4, [2.0])

    assert rho == 0.5


def test_releases_with_different_multipliers_add_up():
    rho = rho_per_person(3, [1.0, 3.0])

    assert rho == pytest.approx(3 / 2 + 3 / 18)


def test_epsilon_of_a_zcdp_bound_at_delta():
    # 0.5 + 2·√(0.5·ln 10⁶) = 0.5 + 2·√6.9078 = 0.5 + 5.2566, worked out by hand
    eps = epsilon(0.5, 1e-6)

    assert eps == pytest.approx(5.7566, abs=1e-4)


@pytest.mark.parametrize("target, features", [(0.5, 1), (1.0, 8), (4.0, 30)])
def test_the_multiplier_for_a_target_epsilon_spends_exactly_it(target, features):
    z = multiplier_for(target, 1e-6, features)

    assert epsilon(rho_per_person(features, [z]), 1e-6) == pytest.approx(target)


def test_epsilon_one_at_one_in_a_million_needs_a_multiplier_of_about_five_per_root_feature():
    """The figure the config reference and the README quote."""
    assert multiplier_for(1.0, 1e-6, 1) == pytest.approx(5.35, abs=0.01)
    assert multiplier_for(1.0, 1e-6, 9) == pytest.approx(3 * 5.35, abs=0.03)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_a_multiplier_must_be_a_positive_number(bad):
    with pytest.raises(ConfigError, match="positive"):
        rho_per_person(3, [bad])


@pytest.mark.parametrize("bad", [0.0, 1.0, 2.0])
def test_delta_must_lie_strictly_between_zero_and_one(bad):
    with pytest.raises(ConfigError, match="δ"):
        epsilon(0.1, bad)


def test_the_noise_on_a_score_is_z_times_the_weighted_widths_in_l2():
    sigma = score_sigma(np.array([1.0, -2.0, 0.0]), np.array([3.0, 2.0, 5.0]), 0.5)

    assert sigma == pytest.approx(0.5 * 5.0)  # ‖(3, −4, 0)‖ = 5


# -- the noise -------------------------------------------------------------------------------------------------------


def test_the_same_key_context_and_id_give_the_same_noise_in_any_request():
    first = standard_normals(SECRET, CONTEXT, ids(50), 5)

    again = standard_normals(SECRET, CONTEXT, ids(50)[::-1], 5)[::-1]  # another request, in another order
    fewer_columns = standard_normals(SECRET, CONTEXT, ids(50), 3)

    assert np.array_equal(first, again)
    assert np.array_equal(first[:, :3], fewer_columns)


def test_another_id_key_or_context_gives_other_noise():
    base = standard_normals(SECRET, CONTEXT, ["C1"], 4)

    other_id = standard_normals(SECRET, CONTEXT, ["C2"], 4)
    other_key = standard_normals(bytes(32), CONTEXT, ["C1"], 4)
    other_partner = standard_normals(SECRET, ("bank-2", *CONTEXT[1:]), ["C1"], 4)
    other_multiplier = standard_normals(SECRET, (*CONTEXT[:2], (3.0).hex()), ["C1"], 4)
    shifted_fields = standard_normals(SECRET, ("ban", "kbehaviour", CONTEXT[2]), ["C1"], 4)  # the same bytes run

    for other in (other_id, other_key, other_partner, other_multiplier, shifted_fields):
        assert not np.any(np.isclose(base, other))


def test_the_noise_over_many_ids_is_standard_gaussian():
    values = standard_normals(SECRET, CONTEXT, ids(20_000), 6)

    assert abs(values.mean()) < 0.01
    assert values.std() == pytest.approx(1.0, abs=0.01)
    assert np.mean(np.abs(values) > 1.959964) == pytest.approx(0.05, abs=0.004)  # the two tails of N(0, 1)
    correlations = np.corrcoef(values, rowvar=False)[np.triu_indices(6, 1)]
    assert np.abs(correlations).max() < 0.03  # the columns are independent


def test_a_short_key_is_refused():
    with pytest.raises(ConfigError, match="too short"):
        standard_normals(b"short", CONTEXT, ["C1"], 1)


def test_a_fingerprint_names_a_key_without_giving_it():
    assert key_fingerprint(SECRET) == key_fingerprint(bytes(SECRET))
    assert key_fingerprint(SECRET) != key_fingerprint(bytes(32))
    assert SECRET.hex()[:16] != key_fingerprint(SECRET)


def noise(multiplier: float = 2.0, lo=(0.0, 10.0, 5.0), hi=(1.0, 30.0, 5.0)) -> ScoreNoise:
    box = FeatureBox(np.array(lo), np.array(hi))
    return ScoreNoise(SECRET, CONTEXT, multiplier, box, np.arange(len(lo)))


def test_rows_are_clipped_to_the_box_before_their_noise_is_added():
    rows = np.array([[-5.0, 100.0, 7.0], [0.5, 20.0, 5.0]])
    plan = noise()

    noisy = plan.perturb(["C1", "C2"], rows)

    added = noisy - np.array([[0.0, 30.0, 5.0], [0.5, 20.0, 5.0]])  # the rows clipped by hand
    expected = 2.0 * np.array([1.0, 20.0, 0.0]) * standard_normals(SECRET, CONTEXT, ["C1", "C2"], 3)
    assert np.allclose(added, expected)
    assert np.all(noisy[:, 2] == 5.0)  # a constant feature gets no noise: it tells nothing


def test_the_noise_on_each_feature_is_z_times_its_width():
    rows = np.tile([0.5, 20.0, 5.0], (20_000, 1))

    noisy = noise(multiplier=0.5).perturb(ids(20_000), rows)

    assert noisy.std(axis=0) == pytest.approx([0.5 * 1.0, 0.5 * 20.0, 0.0], rel=0.02, abs=1e-12)
    assert noisy.mean(axis=0) == pytest.approx([0.5, 20.0, 5.0], abs=0.15)


def test_a_score_of_noisy_rows_has_the_predicted_sigma():
    theta = np.array([2.0, -0.1, 1.0])
    plan = noise(multiplier=0.5)
    rows = np.tile([0.5, 20.0, 5.0], (20_000, 1))

    scores = plan.perturb(ids(20_000), rows) @ theta

    assert scores.std() == pytest.approx(score_sigma(theta, plan.box.width, 0.5), rel=0.02)


def test_a_table_of_the_wrong_shape_is_refused():
    with pytest.raises(DataError, match="2 IDs × 3 features"):
        noise().perturb(["C1", "C2"], np.zeros((2, 2)))


def test_a_box_is_the_range_of_the_rows_it_is_fitted_on():
    box = FeatureBox.fit(np.array([[1.0, 5.0], [3.0, np.nan], [2.0, -1.0]]))

    assert box.lo.tolist() == [1.0, -1.0] and box.hi.tolist() == [3.0, 5.0]
    with pytest.raises(DataError, match="every feature"):
        FeatureBox.fit(np.array([[1.0, np.nan]]))


def test_a_model_part_keeps_its_box_and_an_older_one_loads_without():
    part = ModelPartA("logistic", ["a", "b"], Standardizer(np.zeros(2), np.ones(2)), np.array([1.0, 2.0]),
                      feature_box=FeatureBox(np.array([0.0, 1.0]), np.array([2.0, 3.0])))
    older = {key: value for key, value in part.to_dict().items() if key != "feature_box"}

    again = ModelPartA.from_dict(part.to_dict())

    assert again.feature_box is not None and again.feature_box.to_dict() == {"lo": [0.0, 1.0], "hi": [2.0, 3.0]}
    assert ModelPartA.from_dict(older).feature_box is None
