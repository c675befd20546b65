from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat.config import ConfigError, get_config

        # A bad config file stops manage.py and Daphne at start-up with a one-line message
        # naming the file, the line and the problem (no traceback to dig through).
        try:
            get_config()
        except ConfigError as exc:
            raise SystemExit(f"Dispatch config error: {exc}") from exc
