"""The JSON API's feature routers: each module holds one feature's routes as a django-ninja
``Router``, mounted on the API by chat/api.py (docs/architecture.md)."""
