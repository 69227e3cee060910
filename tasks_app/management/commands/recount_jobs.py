"""Count every team's jobs per status again, after jobs were written around the app."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from tasks_app import services
from tasks_app.models import Team


class Command(BaseCommand):
    help = (
        "Recount each team's jobs per status (the history's counts and page totals). The app "
        "keeps them itself; run this after a bulk import or an SQL update of jobs."
    )

    def handle(self, *args, **options) -> None:
        teams = Team.objects.order_by("pk")
        for team in teams.iterator():
            services.job_tallies_rebuild(team=team)
        self.stdout.write(f"Recounted the jobs of {teams.count()} team(s).")
