"""``manage.py dispatch_firstrun``: on a fresh install, an admin account and a login link.

Run by ``make run`` after ``migrate``. With no superuser yet it creates ``admin`` with an
unusable password (there is no default password anywhere) and prints a single-use login link
valid for 24 hours. Once an admin exists it prints nothing secret; ``--link`` prints a fresh
link for the first active superuser.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from chat.auth import LOGIN_LINK_MAX_AGE, login_link_token_create, login_link_url

ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = "Create the first admin account and print a one-time login link (fresh installs)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--link", action="store_true", help="print a new one-time login link for the admin"
        )

    def handle(self, *args, link: bool, **options):
        users = get_user_model().objects
        admin = users.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if admin is None:
            admin = users.create_superuser(username=_free_username(users), password=None)
            self.stdout.write(f"Created the admin account {admin.username!r} (no password).")
        elif not link:
            self.stdout.write(
                "An admin account exists. For a one-time login link run: "
                "manage.py dispatch_firstrun --link"
            )
            return
        hours = int(LOGIN_LINK_MAX_AGE.total_seconds() // 3600)
        self.stdout.write(
            f"Log in as {admin.username!r} with this link (single use, valid {hours} h):\n"
            f"  {login_link_url(login_link_token_create(user=admin))}\n"
            "Set a password with: manage.py changepassword " + admin.username
        )


def _free_username(users) -> str:
    """``admin``, or ``admin-2``, ``admin-3`` … when a regular user already has that name."""
    name, suffix = ADMIN_USERNAME, 1
    while users.filter(username=name).exists():
        suffix += 1
        name = f"{ADMIN_USERNAME}-{suffix}"
    return name
