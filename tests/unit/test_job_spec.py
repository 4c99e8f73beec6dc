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
])
def test_bad_feature_party_lists_are_refused_with_the_fix(form, message):
    with pytest.raises(ConfigError, match=message):
        JobSpec.parse({**form, **B})


def test_several_feature_parties_are_kept_in_order_and_survive_a_stored_round_trip():
    spec = JobSpec.parse({"feature_parties": [{"peer": "shop", "dataset": "behaviour"},
                                              {"peer": "telco", "dataset": "usage"}], **B})

    again = JobSpec.parse(spec.stored())

    assert [(p.peer, p.dataset) for p in again.feature_parties] == [("shop", "behaviour"), ("telco", "usage")]
    assert again.party_a.peer == "shop"  # the first feature party, for code that names one


def _registration(**psi: object):
    from vfl.ml.config import TrainingConfig
    from vfl.service.spec import PsiSettings, Registration

    return Registration(job_id="job-1", parties={"A": "shop", "B": "bank", "C": "arbiter"},
                        training=TrainingConfig(), psi=PsiSettings(**psi), gradient_lengths={"B": 3})


def test_a_plain_rsa_registration_carries_no_field_an_older_party_would_refuse():
    from vfl.service.spec import Registration

    body = _registration().wire()

    assert "protocol" not in body["psi"] and "scorecard" not in body  # added after the previous release
    assert "classes" not in body and "max_classes" not in body["training"]  # multi-class, added since
    assert Registration.model_validate(body) == _registration()


def test_an_ecdh_registration_names_its_protocol_so_an_older_party_refuses_it_by_name():
    from vfl.service.spec import Registration

    body = _registration(protocol="ecdh").wire()

    assert body["psi"]["protocol"] == "ecdh"
    assert Registration.model_validate(body).psi.protocol == "ecdh"


def test_default_class_cap_and_loss_leave_the_config_digest_as_before_they_existed():
    import hashlib

    from vfl.ml.config import TrainingConfig

    plain, capped, exact = TrainingConfig(), TrainingConfig(max_classes=5), TrainingConfig(loss="exact")
    before = hashlib.sha256(plain.model_dump_json(exclude={"max_classes", "loss"}).encode()).hexdigest()[:16]

    assert plain.digest() == before  # what a release without the fields computes for the same settings
    assert capped.digest() != before  # a job with another cap is another config
    assert exact.digest() != before  # and so is a job on the exact loss
