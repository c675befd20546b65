from channels.generic.websocket import AsyncJsonWebsocketConsumer


class ChatConsumer(AsyncJsonWebsocketConsumer):
    pass


class UIConsumer(AsyncJsonWebsocketConsumer):
    pass
