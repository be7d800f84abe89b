"""The fake device's call counts start from zero in every test of this folder.

``FAKE`` is module state: without this, a test that reads ``FAKE.closes`` counts the
closes of whichever test ran before it in the same process (the order varies under
pytest-xdist).
"""

from __future__ import annotations

import pytest

from tests.discovery.fakes import FAKE, FakeHardware


@pytest.fixture(autouse=True)
def _fresh_fake() -> None:
    FAKE.__dict__.update(FakeHardware().__dict__)
