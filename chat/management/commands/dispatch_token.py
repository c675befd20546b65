"""``manage.py dispatch_token <username>``: a new API token for an existing user."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat.auth import api_token_create


class Command(BaseCommand):
    help = (
        "Create an API token for an existing user and print it (alone on the last line). "
        "Only its hash is stored: it cannot be shown again. Revoke tokens in the admin."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a label to tell the token apart")

    def handle(self, *args, username: str, name: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r} (create it first: createsuperuser)")
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        token = api_token_create(user=user, name=name)
        self.stderr.write(
            f"API token for {username} (shown once; send it as 'Authorization: Bearer <token>'):"
        )
        self.stdout.write(token)
