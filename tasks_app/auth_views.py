"""Log-in, guarded by django-axes (``LoginGuard`` and the AXES_ settings), and a throttled
password reset."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_ip_address
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.contrib.auth.views import LoginView, PasswordResetView
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django.views.i18n import set_language

from tasks_app.services import profiles


class StudioLoginView(LoginView):
    redirect_authenticated_user = True

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        """Log in, and keep the browser's language (or the one picked on the log-in page) for
        the person's e-mails if they have none yet."""
        response = super().form_valid(form)
        profiles.profile_remember_language(
            user_id=form.get_user().pk,
            language=translation.get_language_from_request(self.request),
        )
        return response


@require_POST
def language_set(request: HttpRequest) -> HttpResponseBase:
    """Django's language switch; for a logged-in person the choice is also stored, so their
    e-mails are written in it."""
    response = set_language(request)
    language = request.POST.get("language", "")
    if request.user.is_authenticated and language:
        profiles.profile_set_language(user_id=request.user.pk, language=language)
    return response


class ThrottledPasswordResetView(PasswordResetView):
    """Django's password reset, at most ``PASSWORD_RESETS_PER_HOUR`` an hour for one e-mail
    address and for one client, so it cannot be used to flood an inbox or probe addresses."""

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        if settings.SITE_URL:
            # The link in the e-mail leads to the studio's public address, whatever host
            # name this request came in on.
            scheme, _sep, domain = settings.SITE_URL.partition("://")
            self.extra_email_context = {"protocol": scheme, "domain": domain, "site_name": domain}
        email = unicodedata.normalize("NFKC", form.cleaned_data["email"]).casefold()
        client = get_client_ip_address(self.request) or "?"
        over = [_count_reset(f"reset-email:{email}"), _count_reset(f"reset-client:{client}")]
        if max(over) > settings.PASSWORD_RESETS_PER_HOUR:
            form.add_error(
                "email",
                _("Too many reset requests. Wait an hour, or ask an admin to reset it."),
            )
            return self.form_invalid(form)
        return super().form_valid(form)


def password_reset_only_with_email(
    view: Callable[..., HttpResponseBase],
) -> Callable[..., HttpResponseBase]:
    """A password-reset page that is a 404 unless e-mail really leaves the server: with the
    console backend a reset link would only be written to the log, where anyone reading it
    could take over the account."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not settings.PASSWORD_RESET_ENABLED:
            raise Http404
        return view(request, *args, **kwargs)

    return login_not_required(wrapped)


def _count_reset(key: str) -> int:
    """One more request under ``key`` this hour; how many there have been."""
    cache.add(key, 0, timeout=3600)
    try:
        return cache.incr(key)
    except ValueError:  # expired between the two calls: this is the first of a new hour
        cache.set(key, 1, timeout=3600)
        return 1


def login_username(request: HttpRequest | None, credentials: dict | None) -> str:
    """The name failures are counted under: as Django matches it (NFKC), in any case.

    Without this, the full-width or mathematical-bold spellings of ``alice`` would each get
    fresh guesses at ``alice``.
    """
    typed = (credentials or {}).get("username") or ""
    return unicodedata.normalize("NFKC", str(typed)).casefold()


class LoginGuard(AxesDatabaseHandler):
    """Axes' database handler with a limit per kind of failure.

    Axes counts failures per account and per address against one limit; an office behind
    one address may fail more often than one account should, so each has its own:
    ``LOGIN_FAILURES_PER_ACCOUNT`` and ``LOGIN_FAILURES_PER_IP``. Axes compares what this
    returns with ``AXES_FAILURE_LIMIT`` (the account limit).
    """

    def get_failures(self, request: HttpRequest, credentials: dict | None = None) -> int:
        by_account, by_address = (
            sum(attempts.values_list("failures_since_start", flat=True))
            for attempts in self.get_user_attempts(request, credentials)
        )
        if by_address >= settings.LOGIN_FAILURES_PER_IP:
            return max(by_account, settings.LOGIN_FAILURES_PER_ACCOUNT)
        return by_account


def locked_out(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """What a locked-out person sees: why, and from when they may try again."""
    cooloff = settings.AXES_COOLOFF_TIME
    context = {
        "minutes": int(cooloff.total_seconds() // 60),
        "retry_at": timezone.now() + cooloff,
    }
    return render(request, "registration/locked_out.html", context, status=429)
