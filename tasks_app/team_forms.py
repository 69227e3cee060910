"""The team page's forms: adding a person, changing a role, the monthly budget."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

from tasks_app.models import TeamRole


class MemberAddForm(forms.Form):
    who = forms.CharField(
        label=_("Username or e-mail address"),
        max_length=254,
        help_text=_("The person needs an account in the studio already."),
    )
    role = forms.ChoiceField(label=_("Role"), choices=TeamRole.choices, initial=TeamRole.MEMBER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=TeamRole.choices)


class BudgetForm(forms.Form):
    budget = forms.DecimalField(
        label=_("Monthly credit budget"),
        required=False,
        min_value=Decimal("0"),
        max_digits=10,
        decimal_places=2,
        help_text=_("Leave it empty for no limit."),
    )
