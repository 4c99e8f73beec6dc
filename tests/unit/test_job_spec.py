"""The job spec names its feature parties as a list, or in the two-party form."""

import pytest

from vfl.errors import ConfigError
from vfl.service.spec import JobSpec

B = {"party_b": {"dataset": "credit"}}


@pytest.mark.parametrize("form", [{"feature_parties": [{"peer": "shop", "dataset": "behaviour"}]},
                                  {"party_a": {"peer": "shop", "dataset": "behaviour"}}])
def test_both_forms_name_the_same_party_and_survive_a_round_trip(form):
    spec = JobSpec.parse({**form, **B})

    again = JobSpec.parse(spec.model_dump(mode="json"))

    assert again.party_a.peer == "shop" and [p.peer for p in again.feature_parties] == ["shop"]


@pytest.mark.parametrize("form, message", [
    ({}, "name the feature parties once"),
    ({"party_a": {"peer": "a", "dataset": "x"}, "feature_parties": [{"peer": "b", "dataset": "y"}]}, "once"),
    ({"feature_parties": [{"peer": "a", "dataset": "x"}, {"peer": "a", "dataset": "y"}]}, "names a peer twice"),
    ({"feature_parties": [{"peer": "a", "dataset": "x"}, {"peer": "t", "dataset": "y"}]}, r"got 2 \(a, t\).*vfl simulate"),
])
def test_bad_feature_party_lists_are_refused_with_the_fix(form, message):
    with pytest.raises(ConfigError, match=message):
        JobSpec.parse({**form, **B})
