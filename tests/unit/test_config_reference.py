"""docs/configuration.md is generated from the configuration models and kept current; LICENSE is Apache-2.0."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_reference_is_up_to_date():
    script = load_script()

    assert (ROOT / "docs" / "configuration.md").read_text() == script.render(), (
        "docs/configuration.md is out of date: run python scripts/config_reference.py")


def test_every_key_of_every_model_has_a_row_with_a_meaning():
    script = load_script()
    text = (ROOT / "docs" / "configuration.md").read_text()

    for _, model in script.service_sections() + script.job_sections():
        for key, field in script.fields_of(model):
            rows = [line for line in text.splitlines() if line.startswith(f"| `{key}` |")]
            assert rows, f"{model.__name__}.{key} is not in docs/configuration.md"
            assert all(not line.rstrip().endswith("|  |") for line in rows), f"{model.__name__}.{key} has no meaning"


def test_every_table_of_a_service_config_and_every_object_of_a_job_spec_has_a_section():
    from vfl.ml.config import PrivacyConfig, ThresholdRule, TrainingConfig
    from vfl.service.config import ServiceConfig
    from vfl.service.spec import JobSpec, FeaturePartyRef

    script = load_script()
    text = (ROOT / "docs" / "configuration.md").read_text()

    sections = dict((model, title) for title, model in script.service_sections())
    for name, field in ServiceConfig.model_fields.items():
        if name != "source":  # set by load_config, not a table of the file
            assert any(f"### `[{name}" in line for line in text.splitlines()), f"[{name}] has no section"
    assert len(sections) == len(ServiceConfig.model_fields) - 1
    titles = dict((model, title) for title, model in script.job_sections())
    assert titles[JobSpec] == "top level" and titles[TrainingConfig] == "`training`"
    assert titles[FeaturePartyRef] == "`party_a`, `feature_parties[]`"
    assert titles[PrivacyConfig] == "`training.privacy`" and titles[ThresholdRule] == "`training.threshold`"


def test_check_mode_reports_a_stale_file(tmp_path):
    stale = tmp_path / "configuration.md"
    stale.write_text("# old\n")
    script = [sys.executable, str(ROOT / "scripts" / "config_reference.py")]

    refused = subprocess.run([*script, "--check", "--out", str(stale)], capture_output=True, text=True, timeout=60)
    written = subprocess.run([*script, "--out", str(stale)], capture_output=True, text=True, timeout=60)
    accepted = subprocess.run([*script, "--check", "--out", str(stale)], capture_output=True, text=True, timeout=60)

    assert refused.returncode == 1 and "out of date" in refused.stderr and "+| `min_key_bits` |" in refused.stdout
    assert written.returncode == 0 and accepted.returncode == 0


def test_the_readme_links_the_reference():
    assert "(docs/configuration.md)" in (ROOT / "README.md").read_text()


def test_license_is_the_full_apache_2_text_pyproject_names():
    text = (ROOT / "LICENSE").read_text()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]  # an SPDX expression

    assert declared == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 190
