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


def _spec(**extra: object) -> dict:
    return {"party_a": {"peer": "shop", "dataset": "behaviour"}, "party_b": {"dataset": "credit"}, **extra}


def test_a_registration_carries_prepare_only_when_the_job_sets_it_and_only_its_keys():
    from vfl.ml.prep import JobPrepare
    from vfl.service.spec import Registration

    plain = _registration().wire()
    tuned = _registration().model_copy(update={"prepare": JobPrepare.model_validate({"impute": "median"})}).wire()

    assert "prepare" not in plain  # an older feature party still accepts a job without it
    assert tuned["prepare"] == {"impute": "median"}  # an unset key keeps the party's dataset setting
    assert Registration.model_validate(tuned).prepare.given == {"impute": "median"}


def test_a_jobs_prepare_entry_replaces_the_datasets_keys_it_names():
    from vfl.ml.prep import JobPrepare, PrepConfig

    dataset = PrepConfig(impute="constant", impute_value=5.0, categorical={"segment": "onehot"})
    entry = JobPrepare.model_validate({"impute": "median", "missing_indicator": True,
                                       "categorical": {"city": "ordinal"}})

    merged = entry.over(dataset)

    assert merged.impute == "median" and merged.impute_value == 0.0 and merged.missing_indicator
    assert merged.categorical == {"segment": "onehot", "city": "ordinal"}
    assert JobPrepare().over(dataset) == dataset


@pytest.mark.parametrize("prepare, message", [
    ({"shop": {"imput": "median"}}, "unknown key 'prepare.shop.imput'; did you mean 'impute'?"),
    ({"shop": {"ids": {"strip_leading_zeros": True}}}, "ids (ID normalisation) is set per dataset only"),
    ({"shop": {"impute": "mean", "impute_value": 2}}, 'impute_value goes with impute = "constant"'),
    ({"shop": {"categorical": {"city": "binary"}}}, "prepare.shop.categorical.city"),
])
def test_a_bad_prepare_entry_is_refused_with_the_fix(prepare, message):
    with pytest.raises(ConfigError) as refused:
        JobSpec.parse(_spec(prepare=prepare))

    assert message in str(refused.value)


def test_a_scorecard_job_refuses_prepare():
    with pytest.raises(ConfigError, match="drop \"prepare\""):
        JobSpec.parse(_spec(scorecard={}, training={"optimizer": "sgd"}, prepare={"shop": {"impute": "median"}}))


def test_vfl_simulate_says_that_a_job_specs_prepare_is_for_the_services(tmp_path, capsys):
    import argparse
    import json

    from vfl.cli.simulate import _training_config, register

    path = tmp_path / "job.json"
    path.write_text(json.dumps(_spec(training={"epochs": 3}, prepare={"shop": {"impute": "median"}})))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["simulate", "--party-a", "a.csv", "--party-b", "b.csv", "--id-column", "id",
                              "--out", "result.json", "--config", str(path)])

    config = _training_config(args)

    assert config.epochs == 3
    assert "\"prepare\" is for the services" in capsys.readouterr().err
