"""Fixtures of the reliability suite."""

import threading

import pytest


@pytest.fixture
def gates():
    """Gates to hold scripted streams; all released when the test ends, pass or fail."""
    made: list[threading.Event] = []
    yield lambda: made.append(threading.Event()) or made[-1]
    for gate in made:
        gate.set()
