"""Teams: which team a person works in, and what they may do with a team's jobs."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils.translation import gettext as _

from tasks_app.models import Job, Membership, Profile, Team, TeamRole


def profile_get(*, user: AbstractBaseUser) -> Profile:
    profile, _created = Profile.objects.select_related("current_team").get_or_create(user=user)
    return profile


def team_for_person(*, user: AbstractBaseUser) -> Team:
    """The team a person is working in now.

    Their chosen team if they still belong to it, else their first team; a person with no
    team at all (the first superuser, say) gets a personal team, so a fresh install works.
    """
    profile = profile_get(user=user)
    team = profile.current_team
    if team is not None and Membership.objects.filter(team=team, user=user).exists():
        return team
    membership = Membership.objects.filter(user=user).select_related("team").first()
    with transaction.atomic():
        if membership is None:
            team = Team.objects.create(
                name=_("{name}'s team").format(name=user.get_username()), is_personal=True
            )
            Membership.objects.create(team=team, user=user, role=TeamRole.ADMIN)
        else:
            team = membership.team
        profile.current_team = team
        profile.save(update_fields=["current_team"])
    return team


def team_switch(*, user: AbstractBaseUser, team_id: int) -> Team | None:
    """Make ``team_id`` the person's current team; None when they are not a member."""
    membership = Membership.objects.filter(user=user, team_id=team_id).select_related("team")
    membership = membership.first()
    if membership is None:
        return None
    Profile.objects.update_or_create(user=user, defaults={"current_team": membership.team})
    return membership.team


def team_role(*, user: AbstractBaseUser, team: Team) -> str | None:
    return Membership.objects.filter(user=user, team=team).values_list("role", flat=True).first()


def job_can_manage(*, user: AbstractBaseUser, job: Job) -> bool:
    """Cancelling and archiving: the person who submitted the job, or a team admin."""
    if job.submitted_by_id == user.pk:
        return True
    return team_role(user=user, team=job.team) == TeamRole.ADMIN


def team_ids_managed(*, user: AbstractBaseUser) -> set[int]:
    """Teams whose every job the person may cancel and archive (they are its admin)."""
    admin = Membership.objects.filter(user=user, role=TeamRole.ADMIN)
    return set(admin.values_list("team_id", flat=True))
