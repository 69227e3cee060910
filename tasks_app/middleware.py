"""Security headers the studio sends with every response."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from django.contrib.admin.views.main import ERROR_FLAG
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.utils.functional import SimpleLazyObject
from django.utils.translation import gettext as _

from tasks_app.models import Profile

if TYPE_CHECKING:
    from tasks_app.views import StudioRequest

# Scripts only from our own files (htmx and studio.js are served as static files, never inline).
# Styles allow inline `style` attributes, which htmx's swap transitions set on elements.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "media-src 'self' https: http:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # The admin too: Django's admin loads its scripts from files, like the studio.
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class ProfileMiddleware:
    """Gives each request its reader's profile as ``request.profile``, read on first use.

    Lazy, so a request that never asks (a status poll, a static file) costs no query.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated:
            # What the logged-in views read as ``StudioRequest.profile``; the lazy object
            # stands in for the Profile it reads.
            studio_request = cast("StudioRequest", request)
            studio_request.profile = cast(
                Profile, SimpleLazyObject(lambda: Profile.objects.for_user(user))
            )
        return self.get_response(request)


class OutOfRangeInputMiddleware:
    """Answers numbers and dates beyond what the database or Python can hold as bad input.

    Django's admin turns most bad list filters into its "?e=1" notice, but not a date that
    overflows once converted to UTC or shifted by a day (``created_at__year=9999``), nor an
    id past 64 bits in a form it shows again: those raise ``OverflowError`` (or, for dates,
    ``ValueError``) deep inside Django, for every model registered in the admin. They can
    only come from a request's own values, so they get the admin's notice on a change list
    and a 400 anywhere else, never a 500.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        match = request.resolver_match
        on_change_list = bool(match and match.url_name and match.url_name.endswith("_changelist"))
        dates_out_of_range = isinstance(exception, ValueError) and "out of range" in str(exception)
        if on_change_list and (isinstance(exception, OverflowError) or dates_out_of_range):
            return HttpResponseRedirect(f"{request.path}?{ERROR_FLAG}=1")
        if isinstance(exception, OverflowError):
            return HttpResponseBadRequest(_("A number or date in this request is out of range."))
        return None
