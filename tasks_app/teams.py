"""Teams: which team a person works in, and what they may do with a team's jobs.

Every page reads its reader's profile once, as ``request.profile`` (``ProfileMiddleware``);
these functions take that profile, whose memberships are read once with it.
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils.translation import gettext as _

from tasks_app.models import Job, Membership, Profile, Team, TeamRole


def team_for_person(*, profile: Profile) -> Team:
    """The team a person is working in now.

    Their chosen team if they still belong to it, else their first team; a person with no
    team at all (the first superuser, say) gets a personal team, so a fresh install works.
    """
    memberships = profile.memberships
    for membership in memberships:
        if membership.team_id == profile.current_team_id:
            return membership.team
    with transaction.atomic():
        if memberships:
            team = memberships[0].team
        else:
            name = _("{name}'s team").format(name=profile.user.get_username())
            team = Team.objects.create(name=name, is_personal=True)
            Membership.objects.create(team=team, user_id=profile.user_id, role=TeamRole.ADMIN)
            del profile.memberships  # read again, with the new team, when next asked
        profile.current_team = team
        profile.save(update_fields=["current_team"])
    return team


def team_switch(*, profile: Profile, team_id: int) -> Team | None:
    """Make ``team_id`` the person's current team; None when they are not a member."""
    for membership in profile.memberships:
        if membership.team_id == team_id:
            profile.current_team = membership.team
            profile.save(update_fields=["current_team"])
            return membership.team
    return None


def team_ids_managed(*, profile: Profile) -> set[int]:
    """Teams whose every job the person may cancel and archive (they are its admin)."""
    return {m.team_id for m in profile.memberships if m.role == TeamRole.ADMIN}


def job_can_manage(*, user: AbstractBaseUser, profile: Profile, job: Job) -> bool:
    """Cancelling and archiving: the person who submitted the job, or a team admin.

    The submitter is known from ``user`` alone, so the status poll of one's own job never
    reads the profile (``request.profile`` is read on first use).
    """
    return job.submitted_by_id == user.pk or job.team_id in team_ids_managed(profile=profile)
