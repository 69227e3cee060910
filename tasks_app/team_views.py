"""The team page (members, roles, the monthly budget) and the team's credit usage.

Always the person's current team (``teams.team_for_person``): a membership of another team
is a 404. Team admins change things; members see the page read-only. Staff manage every team
in the admin.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from tasks_app import teams
from tasks_app.models import Membership, Team, TeamRole
from tasks_app.services import budgets, memberships
from tasks_app.team_forms import BudgetForm, MemberAddForm, MemberRoleForm
from tasks_app.views import StudioRequest


def _team_page(
    request: StudioRequest,
    team: Team,
    *,
    add_form: MemberAddForm | None = None,
    budget_form: BudgetForm | None = None,
    member_errors: dict[int, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    is_admin = team.pk in teams.team_ids_managed(profile=request.profile)
    rows = Membership.objects.filter(team=team).select_related("user")
    context = {
        "team": team,
        "is_admin": is_admin,
        "memberships": rows.order_by("role", "user__username"),  # admins first
        "add_form": add_form or MemberAddForm(),
        "budget_form": budget_form or BudgetForm(initial={"budget": team.monthly_credit_budget}),
        "budget": budgets.team_budget_state(team=team),
        "member_errors": member_errors or {},
        "roles": TeamRole.choices,
    }
    return render(request, "tasks/team.html", context, status=status)


def _managed_team(request: StudioRequest) -> Team:
    """The current team, when the person is its admin (else a 403: they see the page)."""
    team = teams.team_for_person(profile=request.profile)
    if team.pk not in teams.team_ids_managed(profile=request.profile):
        raise PermissionDenied
    return team


def _membership_id(request: StudioRequest, team: Team, membership_id: int) -> int:
    """``membership_id`` if it is in ``team``; another team's is a 404."""
    if not Membership.objects.filter(team=team, pk=membership_id).exists():
        raise Http404
    return membership_id


@require_GET
def team_detail(request: StudioRequest) -> HttpResponse:
    return _team_page(request, teams.team_for_person(profile=request.profile))


@require_POST
def team_member_add(request: StudioRequest) -> HttpResponse:
    team = _managed_team(request)
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            added = memberships.membership_add(
                team=team, who=form.cleaned_data["who"], role=form.cleaned_data["role"]
            )
        except memberships.MembershipRefused as refused:
            form.add_error("who", str(refused))
        else:
            messages.success(
                request, _("{name} is now in the team.").format(name=added.user.get_username())
            )
            return redirect("team")
    return _team_page(request, team, add_form=form, status=400)


@require_POST
def team_member_role(request: StudioRequest, membership_id: int) -> HttpResponse:
    team = _managed_team(request)
    membership_id = _membership_id(request, team, membership_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        return _team_page(
            request, team, member_errors={membership_id: _("Choose a role.")}, status=400
        )
    try:
        changed = memberships.membership_change_role(
            team=team, membership_id=membership_id, role=form.cleaned_data["role"]
        )
    except memberships.MembershipRefused as refused:
        return _team_page(request, team, member_errors={membership_id: str(refused)}, status=400)
    except Membership.DoesNotExist:
        raise Http404 from None
    messages.success(
        request,
        _("{name} is now: {role}.").format(
            name=changed.user.get_username(), role=TeamRole(changed.role).label
        ),
    )
    return redirect("team")


@require_POST
def team_member_remove(request: StudioRequest, membership_id: int) -> HttpResponse:
    """A team admin takes someone out; anyone may leave (remove themselves)."""
    team = teams.team_for_person(profile=request.profile)
    membership_id = _membership_id(request, team, membership_id)
    leaving = Membership.objects.filter(pk=membership_id, user=request.user).exists()
    if not leaving and team.pk not in teams.team_ids_managed(profile=request.profile):
        raise PermissionDenied
    try:
        removed = memberships.membership_remove(team=team, membership_id=membership_id)
    except memberships.MembershipRefused as refused:
        return _team_page(request, team, member_errors={membership_id: str(refused)}, status=400)
    except Membership.DoesNotExist:
        raise Http404 from None
    if leaving:
        messages.success(request, _("You have left {team}.").format(team=team.name))
        return redirect("tasks:list")
    messages.success(
        request,
        _("{name} is no longer in the team.").format(name=removed.user.get_username()),
    )
    return redirect("team")


@require_POST
def team_budget(request: StudioRequest) -> HttpResponse:
    team = _managed_team(request)
    form = BudgetForm(request.POST)
    if not form.is_valid():
        return _team_page(request, team, budget_form=form, status=400)
    budgets.team_set_budget(team=team, budget=form.cleaned_data["budget"])
    messages.success(request, _("Saved."))
    return redirect("team")


@require_GET
def team_usage(request: StudioRequest) -> HttpResponse:
    """Credits per month, per person and per kind, each linking to the jobs behind it."""
    team = teams.team_for_person(profile=request.profile)
    context = {
        "team": team,
        "months": budgets.team_usage(team=team),
        "budget": budgets.team_budget_state(team=team),
    }
    return render(request, "tasks/team_usage.html", context)
