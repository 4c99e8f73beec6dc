"""Messages about a finished job read as English whatever its state ("is already cancelled", never "has already cancelled")."""

from __future__ import annotations

import pytest

from vfl.service.lifecycle import state_phrase
from vfl.service.record import JobRecord


@pytest.mark.parametrize(("state", "already", "phrase"), [
    ("succeeded", True, "has already succeeded"),
    ("failed", True, "has already failed"),
    ("cancelled", True, "is already cancelled"),
    ("cancelled", False, "is cancelled"),
    ("succeeded", False, "has succeeded"),
    ("damaged", False, "is damaged (its record cannot be read back)"),
    ("training", False, "is training"),
])
def test_state_phrase(state, already, phrase):
    assert state_phrase(state, already=already) == phrase
    assert JobRecord(job_id="j", role="B", state=state).state_phrase(already=already) == phrase
