"""Refusals of a job spec or a config say what to type instead: a mistyped key gets "did you mean" and the valid
keys, broken JSON its line and column, an unknown peer the peers this service has."""

from __future__ import annotations

import json

import pytest

from tests.helpers import misspell
from vfl.errors import ConfigError
from vfl.ml.config import TrainingConfig
from vfl.service.config import load_config


def spec(demo_files, **changes):
    return {**demo_files["job"], "job_id": "j", **changes}


def submit(service, run, **request):
    bank = service("party-b")

    async def post():
        async with bank.orchestrator() as client:
            return await client.post("/v1/jobs", **request)

    return run(post())


def test_a_mistyped_training_key_over_rest_names_the_key_it_meant_and_the_valid_ones(service, run, demo_files):
    # Arrange
    job = spec(demo_files)
    job["training"] = {**job["training"], "epoch": 3}

    # Act
    answer = submit(service, run, json=job)

    # Assert
    detail = answer.json()["detail"]
    assert answer.status_code == 422, detail
    assert "unknown key 'training.epoch'; did you mean 'epochs'? valid keys: " in detail
    assert "learning_rate" in detail and "Extra inputs" not in detail


def test_malformed_json_over_rest_says_where_and_what(service, run):
    # Arrange: a property name without quotes on line 3
    body = b'{\n  "party_b": {"dataset": "credit"},\n  training: {"epochs": 3}\n}'

    # Act
    answer = submit(service, run, content=body, headers={"Content-Type": "application/json"})

    # Assert
    detail = answer.json()["detail"]
    assert answer.status_code == 422, detail
    assert detail.startswith("invalid request: the body is not valid JSON: Expecting property name enclosed in "
                             "double quotes at line 3, column 3")
    assert "training" in detail and "JSON decode error" not in detail


def test_an_unknown_feature_party_lists_the_configured_ones(service, run, demo_files):
    # Arrange: the README's names in the demo's federation
    job = spec(demo_files, party_a={"peer": "shop", "dataset": "behaviour"})

    # Act
    answer = submit(service, run, json=job)

    # Assert
    detail = answer.json()["detail"]
    assert answer.status_code == 422, detail
    assert "'shop' is not a configured party A peer of 'party-b'; configured: party-a." in detail
    assert '[peers.shop] with role = "A"' in detail


def test_a_mistyped_toml_key_names_the_key_it_meant(tmp_path, demo_files):
    # Arrange
    config = tmp_path / "party-b.toml"
    misspell(config, "listen =", "listen_port =")

    # Act
    with pytest.raises(ConfigError) as refused:
        load_config(config)

    # Assert
    message = str(refused.value)
    assert message.startswith(f"{config}: unknown key 'party.listen_port'; did you mean 'listen'? valid keys: ")
    assert "data_dir" in message and "'source'" not in message


def test_a_mistyped_key_in_a_dataset_section_is_found_under_its_name(tmp_path, demo_files):
    # Arrange
    config = tmp_path / "party-b.toml"
    misspell(config, "label_column =", "label_colum =")

    # Act
    with pytest.raises(ConfigError) as refused:
        load_config(config)

    # Assert: the dataset's name is part of where, and the keys are those of a dataset
    assert "unknown key 'datasets.credit.label_colum'; did you mean 'label_column'? valid keys: " in str(refused.value)
    assert "id_column" in str(refused.value)


def test_a_training_section_alone_is_described_with_its_place_in_the_spec():
    with pytest.raises(ConfigError) as refused:
        TrainingConfig.parse(json.loads('{"epochs": 3, "learning_rat": 0.1}'))

    assert "unknown key 'training.learning_rat'; did you mean 'learning_rate'?" in str(refused.value)
