"""``GET``/``PUT /preferences``: the user's web app settings (the theme), the same on every
device. The web app's pages without a socket (the metrics page) set the theme here."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from ninja import Router

from chat import selectors, services
from chat.schemas import Error, PreferencesIn, PreferencesOut

router = Router(tags=["preferences"])


@router.get("/preferences", response={200: PreferencesOut, 401: Error})
async def preferences_get(request):
    """The caller's settings: ``theme`` is ``system`` (follow the browser), ``light`` or ``dark``."""
    return {"theme": await sync_to_async(selectors.user_theme)(user=request.auth)}


@router.put("/preferences", response={200: PreferencesOut, 400: Error, 401: Error})
async def preferences_put(request, payload: PreferencesIn):
    theme = await services.preferences_set_theme(user=request.auth, theme=payload.theme)
    return {"theme": theme}
