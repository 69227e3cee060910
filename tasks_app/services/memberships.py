"""Who is in a team, and as what: team admins add people, change roles and remove them.

Every change takes the team's row lock first (``_locked_team``), so two admins acting at once
are served one after the other, and a team always keeps at least one admin.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from tasks_app.models import Membership, Team, TeamRole


class MembershipRefused(Exception):
    """A change the team's rules turn down; the message is shown next to the field."""


def _locked_team(team: Team) -> Team:
    """The team's row, locked until the transaction ends (inside ``transaction.atomic``)."""
    return Team.objects.select_for_update().get(pk=team.pk)


def _other_admins(*, team: Team, membership: Membership) -> int:
    return (
        Membership.objects.filter(team=team, role=TeamRole.ADMIN).exclude(pk=membership.pk).count()
    )


def membership_add(*, team: Team, who: str, role: str = TeamRole.MEMBER) -> Membership:
    """Add an existing account to the team, found by its username or e-mail address.

    An exact username wins; otherwise the username or the e-mail address may differ in case.
    No account, several accounts (one address shared by two accounts) or someone already in
    the team: ``MembershipRefused`` saying which.
    """
    typed = who.strip()
    if not typed:
        raise MembershipRefused(_("Type a username or an e-mail address."))
    people = get_user_model()
    active = people.objects.filter(is_active=True)
    found = list(active.filter(**{people.USERNAME_FIELD: typed})[:2])
    if not found:
        matching = Q(**{f"{people.USERNAME_FIELD}__iexact": typed})
        if "@" in typed:
            matching |= Q(**{f"{people.get_email_field_name()}__iexact": typed})
        found = list(active.filter(matching)[:2])
    if not found:
        raise MembershipRefused(
            _("No account has this username or e-mail address. Ask a studio admin to create it.")
        )
    if len(found) > 1:
        raise MembershipRefused(
            _("Several accounts match this; type the person's username instead.")
        )
    person = found[0]
    with transaction.atomic():
        _locked_team(team)
        if Membership.objects.filter(team=team, user=person).exists():
            raise MembershipRefused(
                _("{name} is already in this team.").format(name=person.get_username())
            )
        try:
            with transaction.atomic():
                return Membership.objects.create(team=team, user=person, role=role)
        except IntegrityError:
            raise MembershipRefused(
                _("{name} is already in this team.").format(name=person.get_username())
            ) from None


def membership_change_role(*, team: Team, membership_id: int, role: str) -> Membership:
    """Make a member an admin, or an admin a member; the team's last admin stays one.

    ``Membership.DoesNotExist`` when ``membership_id`` is not in ``team``.
    """
    with transaction.atomic():
        _locked_team(team)
        membership = Membership.objects.select_related("user").get(team=team, pk=membership_id)
        if role == membership.role:
            return membership
        if membership.role == TeamRole.ADMIN and not _other_admins(
            team=team, membership=membership
        ):
            raise MembershipRefused(
                _("{name} is the team's only admin. Make someone else an admin first.").format(
                    name=membership.user.get_username()
                )
            )
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def membership_remove(*, team: Team, membership_id: int) -> Membership:
    """Take someone out of the team (or let them leave); the team's last admin stays.

    Their jobs stay the team's. ``Membership.DoesNotExist`` when ``membership_id`` is not in
    ``team``.
    """
    with transaction.atomic():
        _locked_team(team)
        membership = Membership.objects.select_related("user").get(team=team, pk=membership_id)
        if membership.role == TeamRole.ADMIN and not _other_admins(
            team=team, membership=membership
        ):
            raise MembershipRefused(
                _(
                    "{name} is the team's only admin and cannot leave it. Make someone else "
                    "an admin first."
                ).format(name=membership.user.get_username())
            )
        membership.delete()
    return membership
