"""Create the demo account once and print its login (demo mode only)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from tasks_app.models import Membership, Profile, Team, TeamRole

DEMO_USERNAME = "demo"
# A published demo login, only made on request.
DEMO_PASSWORD = "lipsync-demo"  # noqa: S105
DEMO_TEAM = "Demo team"


class Command(BaseCommand):
    help = "Create the demo account (once) and print how to log in."

    def handle(self, *args, **options) -> None:
        port = options.get("port") or "8000"
        if not settings.KLING_DEMO:
            # A published password on a studio that spends real credits would be an open door.
            self.stdout.write(
                f"\n  Lip-Sync Studio: http://127.0.0.1:{port}/  (live Kling)\n"
                "  No demo account in live mode. To make your own log-in, run:\n"
                "    .venv/bin/python manage.py createsuperuser\n"
            )
            return
        User = get_user_model()
        with transaction.atomic():
            user, created = User.objects.get_or_create(
                username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True}
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save()
            # The demo account works in a shared "Demo team" (as its admin), not a personal one.
            team = Team.objects.filter(name=DEMO_TEAM, is_personal=False).first()
            if team is None:
                team = Team.objects.create(name=DEMO_TEAM)
            Membership.objects.get_or_create(
                team=team, user=user, defaults={"role": TeamRole.ADMIN}
            )
            profile, _created = Profile.objects.select_related("current_team").get_or_create(
                user=user
            )
            if profile.current_team is None or profile.current_team.is_personal:
                profile.current_team = team
                profile.save(update_fields=["current_team"])
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  Lip-Sync Studio: http://127.0.0.1:{port}/  (demo mode, built-in Kling "
                "simulator)\n"
                f"  Log in as '{DEMO_USERNAME}' with password '{DEMO_PASSWORD}'"
                + ("" if created else " (unless you changed it)")
                + "\n"
            )
        )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", default="8000")
