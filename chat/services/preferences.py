"""A user's web app settings (the theme), kept server-side so every device shows the same.

A change is announced on the user's group (``user.preferences``) once committed; every open
page of the user applies it without a reload.
"""

from __future__ import annotations

from chat.models import UserSettings
from chat.services.events import publish_on_commit, user_group, write
from chat.services.inputs import Theme, check


async def preferences_set_theme(*, user, theme: str) -> str:
    """Set the theme: ``system`` (the browser's choice), ``light`` or ``dark``."""
    theme = check("theme", Theme, theme)
    return await write(_do_set_theme, user=user, theme=theme)


def _do_set_theme(*, user, theme: str) -> str:
    settings, _ = UserSettings.objects.select_for_update().get_or_create(user=user)
    if settings.theme != theme:
        settings.theme = theme
        settings.save(update_fields=["theme"])
        publish_on_commit(user_group(user.pk), {"type": "user.preferences", "theme": theme})
    return theme
