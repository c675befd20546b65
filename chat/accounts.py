"""Web app sign-in: password login, POST-only logout and the single-use login links."""

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.views import LoginView, LogoutView
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.cache import never_cache

from chat.auth import user_for_login_link


@never_cache
def login_once(request, token: str):
    """Log in with a one-time link (``manage.py dispatch_firstrun``); the login spends it."""
    user = user_for_login_link(token)
    if user is None:
        return render(request, "registration/login_link_invalid.html", status=400)
    # The login bumps last_login, which the token signs: the link cannot be used again.
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect(settings.LOGIN_REDIRECT_URL)


urlpatterns = [
    path(
        "login/",
        LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    # Django's LogoutView answers POST only (a GET would let any page log the user out).
    path("logout/", LogoutView.as_view(next_page="login"), name="logout"),
    path("login/once/<str:token>/", login_once, name="login-once"),
]
