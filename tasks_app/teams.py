"""Teams: which team a person works in, and what they may do with a team's jobs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils.translation import gettext as _

from tasks_app.models import Job, Membership, Profile, Team, TeamRole


def profile_get(*, user: AbstractBaseUser) -> Profile:
    """The person's profile, made on first use and read once per user object.

    Like Django's permission cache (``user._perm_cache``), what a page reads about its
    reader several times is kept on the request's user object, which lives one request.
    """
    try:
        return user._studio_profile
    except AttributeError:
        _read(user)
        return user._studio_profile


def memberships_of(*, user: AbstractBaseUser) -> list[Membership]:
    """The person's memberships with their teams, by team name, read once per user object."""
    try:
        return user._studio_memberships
    except AttributeError:
        _read(user)
        return user._studio_memberships


def _read(user: AbstractBaseUser) -> None:
    """Read the person's profile and memberships together, as nearly every page needs both."""
    profile, memberships = Profile.objects.with_memberships(user=user)
    if profile is None:  # their first page: make the profile, then read again
        Profile.objects.get_or_create(user=user)
        profile, memberships = Profile.objects.with_memberships(user=user)
    user._studio_profile, user._studio_memberships = profile, memberships


def _forget(user: AbstractBaseUser, name: str) -> None:
    """Drop what ``profile_get`` or ``memberships_of`` kept, after changing it."""
    with contextlib.suppress(AttributeError):
        delattr(user, name)


def team_for_person(*, user: AbstractBaseUser) -> Team:
    """The team a person is working in now.

    Their chosen team if they still belong to it, else their first team; a person with no
    team at all (the first superuser, say) gets a personal team, so a fresh install works.
    """
    profile = profile_get(user=user)
    memberships = memberships_of(user=user)
    for membership in memberships:
        if membership.team_id == profile.current_team_id:
            return membership.team
    with transaction.atomic():
        if memberships:
            team = memberships[0].team
        else:
            team = Team.objects.create(
                name=_("{name}'s team").format(name=user.get_username()), is_personal=True
            )
            Membership.objects.create(team=team, user=user, role=TeamRole.ADMIN)
            _forget(user, "_studio_memberships")
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
    _forget(user, "_studio_profile")
    return membership.team


def job_can_manage(*, user: AbstractBaseUser, job: Job) -> bool:
    """Cancelling and archiving: the person who submitted the job, or a team admin."""
    return manage_rule(user=user)(job.submitted_by_id, job.team_id)


def manage_rule(*, user: AbstractBaseUser) -> Callable[[int | None, int], bool]:
    """``job_can_manage`` as a check of (submitter id, team id), for a page of jobs: the
    person's memberships are read at most once, and not at all for their own jobs."""

    managed: set[int] | None = None

    def may_manage(submitted_by_id: int | None, team_id: int) -> bool:
        nonlocal managed
        if submitted_by_id == user.pk:
            return True
        if managed is None:  # the first job someone else submitted
            managed = team_ids_managed(user=user)
        return team_id in managed

    return may_manage


def team_ids_managed(*, user: AbstractBaseUser) -> set[int]:
    """Teams whose every job the person may cancel and archive (they are its admin)."""
    return {m.team_id for m in memberships_of(user=user) if m.role == TeamRole.ADMIN}
