from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from tasks_app import notices, teams

if TYPE_CHECKING:
    from tasks_app.views import StudioRequest


def studio(request: HttpRequest) -> dict:
    """Page-wide context. Lazy, so a partial that does not show them costs no queries."""
    user = getattr(request, "user", None)
    context: dict = {
        "demo_mode": settings.KLING_DEMO,
        "password_reset_enabled": settings.PASSWORD_RESET_ENABLED,
    }
    if user is None or not user.is_authenticated:
        return context
    # ``ProfileMiddleware`` gave every logged-in person's request its profile.
    profile = cast("StudioRequest", request).profile
    context["studio_team"] = SimpleLazyObject(lambda: teams.team_for_person(profile=profile))
    context["studio_teams"] = SimpleLazyObject(lambda: profile.memberships)
    # Taking the notices marks them seen, so only full pages do it, never background polls.
    if not getattr(request, "htmx", False):
        context["notices"] = SimpleLazyObject(lambda: notices.notices_take(profile=profile))
    return context
