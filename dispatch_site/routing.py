from django.urls import path

from chat.consumers import ChatConsumer, UIConsumer

websocket_urlpatterns = [
    path("ws/ui", UIConsumer.as_asgi()),
    path("ws", ChatConsumer.as_asgi()),
    path("", ChatConsumer.as_asgi()),
]
