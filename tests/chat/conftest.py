import pytest
from channels_redis.pubsub import RedisPubSubChannelLayer

from tests.chat.live import start_stack


@pytest.fixture(scope="module")
def stack():
    """A real Daphne worker (SQLite, in-memory layer) with a scripted OpenAI-format model."""
    yield from start_stack()


@pytest.fixture
async def redis_layer(monkeypatch, redis_url):
    """A channel layer on the real Redis, as this process's layer (chat.running)."""
    layer = RedisPubSubChannelLayer(hosts=[redis_url])
    monkeypatch.setattr("chat.running.get_channel_layer", lambda: layer)
    yield layer
    await layer.flush()
