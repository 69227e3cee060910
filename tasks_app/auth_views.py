"""Log-in with a brake on password guessing."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.utils.translation import gettext_lazy as _

from tasks_app.ratelimits import login_failure_record, login_failures_clear, login_is_blocked


def client_ip(request) -> str | None:
    # Behind a proxy REMOTE_ADDR is the proxy's; set up the proxy to pass the client's address
    # as REMOTE_ADDR (e.g. gunicorn's --forwarded-allow-ips) rather than trusting a header here.
    return request.META.get("REMOTE_ADDR") or None


class RateLimitedAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "too_many": _(
            "Too many failed log-ins. Wait 15 minutes and try again, or ask an admin to reset "
            "your password."
        ),
    }

    def clean(self):
        username = (self.data.get("username") or "").strip()
        ip = client_ip(self.request) if self.request else None
        if login_is_blocked(username=username, ip=ip):
            raise forms.ValidationError(self.error_messages["too_many"], code="too_many")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            login_failure_record(username=username, ip=ip)
            raise
        login_failures_clear(username=username, ip=ip)
        return cleaned


class StudioLoginView(LoginView):
    form_class = RateLimitedAuthenticationForm
    redirect_authenticated_user = True
