"""Web app sign-in: password login, POST-only logout and the single-use login links.

Both ways in are throttled (chat.throttle): while the client's address or the account name
has used up its failures, the login form answers 429 with the time to wait and the login
link page does the same, whether or not the account exists.
"""

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView, LogoutView
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.cache import never_cache

from chat.auth import user_for_login_link
from chat.throttle import SignInThrottled, request_address, signin_check, signin_failed


def _sentence(exc: SignInThrottled) -> str:
    text = str(exc)
    return text[0].upper() + text[1:] + "."


class SignInForm(AuthenticationForm):
    """Django's login form; a throttled attempt says so instead of "wrong password"."""

    def get_invalid_login_error(self):
        throttled = getattr(self.request, "signin_throttled", None)
        if throttled is not None:
            return ValidationError(_sentence(throttled), code="throttled")
        return super().get_invalid_login_error()


class SignInView(LoginView):
    form_class = SignInForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "throttled"):
            response.status_code = 429
        return response


@never_cache
def login_once(request, token: str):
    """Log in with a one-time link (``manage.py dispatch_firstrun``); the login spends it."""
    address = request_address(request)
    try:
        signin_check(address=address)
    except SignInThrottled as exc:
        context = {"throttled": _sentence(exc)}
        return render(request, "registration/login_link_invalid.html", context, status=429)
    user = user_for_login_link(token)
    if user is None:
        signin_failed(address=address)
        return render(request, "registration/login_link_invalid.html", status=400)
    # The login bumps last_login, which the token signs: the link cannot be used again.
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect(settings.LOGIN_REDIRECT_URL)


urlpatterns = [
    path("login/", SignInView.as_view(), name="login"),
    # Django's LogoutView answers POST only (a GET would let any page log the user out).
    path("logout/", LogoutView.as_view(next_page="login"), name="logout"),
    path("login/once/<str:token>/", login_once, name="login-once"),
]
