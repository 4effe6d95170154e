"""Helpers of the callback tests: the digits model ("boring SNN"), a count spy and a recording logger."""
from __future__ import annotations

import pytest

from tests.helpers.recording import CountSpy


@pytest.fixture
def spy() -> CountSpy:
    return CountSpy()
