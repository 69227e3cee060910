"""Share links: made and revoked from the job page; opened by anyone who has one.

The public pages show a finished video and nothing else of its job (no text, no names, no
other jobs), are kept out of search engines and caches, and answer 404 the moment a link
expires or is revoked.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from tasks_app.forms import ShareForm
from tasks_app.models import Job, ShareLink
from tasks_app.services import sharing
from tasks_app.views import FRESH_SHARE_KEY, StudioRequest, job_page, stored_video_response

# Nothing of a shared page may stay in a cache once its link is revoked, nor reach a search
# engine, nor leak its address to another site through the Referer header.
PUBLIC_HEADERS = {
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@require_POST
def job_share(request: StudioRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.visible_to(request.user).with_people(), pk=pk)
    form = ShareForm(request.POST)
    if form.is_valid():
        try:
            _share, token = sharing.share_create(
                job=job, created_by=request.user, days=form.cleaned_data["days"]
            )
        except sharing.ShareRefused as refused:
            # About the job, not the form (which a job that cannot be shared does not show).
            messages.error(request, str(refused))
            return redirect(job)
        else:
            path = reverse("share_page", args=[token])
            url = (
                f"{settings.SITE_URL}{path}"
                if settings.SITE_URL
                else request.build_absolute_uri(path)
            )
            request.session[FRESH_SHARE_KEY] = {"job": job.pk, "url": url}
            return redirect(f"{job.get_absolute_url()}#share")
    return job_page(request, pk=job.pk, share_form=form, status=400)


@require_POST
def share_revoke(request: StudioRequest, pk: int, share_pk: int) -> HttpResponse:
    share = get_object_or_404(ShareLink.objects.visible_to(request.user), pk=share_pk, job_id=pk)
    if sharing.share_revoke(share=share):
        messages.success(request, _("Revoked: the link no longer opens."))
    return redirect(f"{share.job.get_absolute_url()}#share")


def _live_share(token: str) -> ShareLink:
    share = sharing.share_find_live(token=token)
    if share is None or not (share.job.stored_video or share.job.kling_link_is_live):
        raise Http404(_("This link has expired or was revoked."))
    return share


def _with_public_headers(response: HttpResponseBase) -> HttpResponseBase:
    for name, value in PUBLIC_HEADERS.items():
        response[name] = value
    return response


@login_not_required
@require_GET
def share_page(request: HttpRequest, token: str) -> HttpResponseBase:
    """The shared video alone: a player, a download button and "AI-generated video"."""
    _live_share(token)
    response = render(request, "tasks/share_page.html", {"token": token})
    return _with_public_headers(response)


@login_not_required
@require_GET
def share_video(request: HttpRequest, token: str) -> HttpResponseBase:
    """The shared video's bytes (ranged, so the player can seek), while the link is live."""
    job = _live_share(token).job
    as_attachment = request.GET.get("download") == "1"
    if not job.stored_video:
        # Kling's own link, until the studio has its copy (Kling keeps it 30 days).
        return _with_public_headers(redirect(job.result_video_url))
    response = stored_video_response(
        request, job, filename="ai-generated-video.mp4", as_attachment=as_attachment
    )
    return _with_public_headers(response)
