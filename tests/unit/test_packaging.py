"""The package metadata stays buildable by current setuptools without deprecation warnings."""

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_license_is_an_spdx_expression_not_a_deprecated_table() -> None:
    # Arrange
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]

    # Act
    license_value = project["license"]

    # Assert: setuptools warns on `license = { text = ... }` and stops building it after 2027-02-18 (PEP 639).
    assert license_value == "Apache-2.0"


def test_the_build_backend_is_new_enough_to_read_an_spdx_license() -> None:
    # Arrange
    requires = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["build-system"]["requires"]

    # Act
    setuptools_pin = next(requirement for requirement in requires if requirement.startswith("setuptools"))

    # Assert: setuptools reads the SPDX string form from version 77 on.
    assert setuptools_pin == "setuptools>=77"
