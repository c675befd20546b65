import pytest

from tests.chat.live import start_stack


@pytest.fixture(scope="module")
def stack():
    """A real Daphne worker (SQLite, in-memory layer) with a scripted OpenAI-format model."""
    yield from start_stack()
