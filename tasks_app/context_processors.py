from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from tasks_app import notices, teams


def studio(request: HttpRequest) -> dict:
    """Page-wide context. Lazy, so a partial that does not show them costs no queries."""
    user = getattr(request, "user", None)
    context: dict = {"demo_mode": settings.KLING_DEMO}
    if user is None or not user.is_authenticated:
        return context
    context["studio_team"] = SimpleLazyObject(lambda: teams.team_for_person(user=user))
    context["studio_teams"] = SimpleLazyObject(lambda: teams.memberships_of(user=user))
    # Taking the notices marks them seen, so only full pages do it, never background polls.
    if not getattr(request, "htmx", False):
        context["notices"] = SimpleLazyObject(lambda: notices.notices_take(user=user))
    return context
