"""A batch's page, its actions and its download.

Every view reads the batch through ``Batch.objects.visible_to``: another team's batch is a 404
on its page, on each action and on its download.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from tasks_app.batch_zip import batch_zip_chunks
from tasks_app.models import Batch
from tasks_app.services import batches

if TYPE_CHECKING:
    from tasks_app.views import StudioRequest


def _batch(request: StudioRequest, pk: int) -> Batch:
    return get_object_or_404(Batch.objects.visible_to(request.user), pk=pk)


def _managed_batch(request: StudioRequest, pk: int) -> Batch:
    """A batch the person may cancel or archive (its maker or a team admin); 403 otherwise."""
    batch = _batch(request, pk)
    if not batches.batch_can_manage(user=request.user, profile=request.profile, batch=batch):
        raise PermissionDenied
    return batch


@require_GET
def batch_detail(request: StudioRequest, pk: int) -> HttpResponse:
    batch = _batch(request, pk)
    rows = batches.batch_rows(batch=batch)
    context = {
        "batch": batch,
        "rows": rows,
        # Asked only when the page offers cancel or archive (a callable is resolved lazily).
        "can_manage": lambda: batches.batch_can_manage(
            user=request.user, profile=request.profile, batch=batch
        ),
    }
    if request.htmx:
        response = render(request, "tasks/batch_detail.html#rows", context)
        if not rows.is_active:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    return render(request, "tasks/batch_detail.html", context)


@require_POST
def batch_retry(request: StudioRequest, pk: int) -> HttpResponseRedirect:
    batch = _batch(request, pk)
    outcome = batches.batch_retry_failed(batch=batch, submitted_by=request.user)
    if outcome.started:
        messages.success(
            request,
            ngettext(
                "Started %(n)d failed row again.",
                "Started %(n)d failed rows again.",
                outcome.started,
            )
            % {"n": outcome.started},
        )
    if outcome.refused:
        messages.error(request, outcome.refused)
    elif not outcome.started:
        messages.info(request, _("No row has failed since the last try; nothing was started."))
    return redirect(batch)


@require_POST
def batch_cancel(request: StudioRequest, pk: int) -> HttpResponseRedirect:
    batch = _managed_batch(request, pk)
    cancelled = batches.batch_cancel_waiting(batch=batch)
    if cancelled:
        messages.success(
            request,
            ngettext(
                "Cancelled %(n)d row before it was sent. No credits were used.",
                "Cancelled %(n)d rows before they were sent. No credits were used.",
                cancelled,
            )
            % {"n": cancelled},
        )
    else:
        messages.info(request, _("No row was still waiting to be sent; nothing was cancelled."))
    return redirect(batch)


@require_POST
def batch_archive(request: StudioRequest, pk: int) -> HttpResponseRedirect:
    batch = _managed_batch(request, pk)
    archive = request.POST.get("archive", "1") == "1"
    batches.batch_archive(batch=batch, archived=archive)
    if archive:
        messages.success(
            request, _("Archived. The batch and its rows are hidden from the history but kept.")
        )
    else:
        messages.success(request, _("The batch and its rows are back in the history."))
    return redirect(batch)


@require_GET
def batch_download(request: StudioRequest, pk: int) -> StreamingHttpResponse:
    """Every finished result of the batch and a manifest, as one ZIP written as it is sent."""
    batch = _batch(request, pk)
    chunks = batch_zip_chunks(
        jobs=batches.batch_rows(batch=batch).jobs,
        language=translation.get_language() or "en",
    )
    response = StreamingHttpResponse(chunks, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}.zip"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
