"""History rows, rendered once and kept, each under a key made of everything it shows.

A history page shows 50 rows, and building 50 jobs and rendering their rows was most of the
page's time, while a row only changes when its job does. So a page reads just the columns its
rows show (``SHOWN``), and each row's HTML is kept under those values, whether the job is
taking longer than usual (the one thing a row shows that moves with the clock), the reader's
rights, language and time zone. Any change is a new key, so a kept row is never stale, only
unused until it expires.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import caches
from django.template.loader import get_template
from django.utils import timezone, translation
from django.utils.safestring import SafeString, mark_safe

from tasks_app import teams
from tasks_app.models import TERMINAL_STATUSES, Job, JobQuerySet

ROW_TEMPLATE = "tasks/job_list.html#row"
CACHE_ALIAS = "template_fragments"
# Keys hold everything a row shows, so this only bounds how long an unused row is kept.
ROW_CACHE_SECONDS = 24 * 3600

# Every value the row partial (job_list.html) reads from a job, as lookups.
SHOWN = (
    "pk",
    "status",
    "mode",
    "text",
    "audio_name",
    "audio_url",
    "voice_id",
    "submitted_by__username",
    "created_at",
    "send_started_at",
    "sent_at",
    "finished_at",
    "archived_at",
    "team_id",
    "submitted_by_id",
)
_PK, _STATUS, _SENT = SHOWN.index("pk"), SHOWN.index("status"), SHOWN.index("sent_at")
_TEAM, _SUBMITTER = SHOWN.index("team_id"), SHOWN.index("submitted_by_id")

Row = tuple[Any, ...]


def history_values(jobs: JobQuerySet) -> JobQuerySet:
    """The jobs as tuples of their ``SHOWN`` values: what history rows are rendered from."""
    return jobs.values_list(*SHOWN)


def history_live_ids(rows: Iterable[Row]) -> list[int]:
    """The ids of the running jobs among ``history_values`` rows: the page refreshes these."""
    return [row[_PK] for row in rows if row[_STATUS] not in TERMINAL_STATUSES]


def history_rows_render(
    *, user: AbstractBaseUser, rows: Iterable[Row], oob: bool = False
) -> list[SafeString]:
    """The HTML of each history row, given as ``history_values`` tuples, for ``user``: kept
    rows from the cache, the others rendered from their jobs (read in one query) and kept.
    ``oob`` rows replace themselves on the page (htmx out-of-band swaps)."""
    rows = list(rows)
    may_manage = teams.manage_rule(user=user)
    key_of = _keyer(oob)
    keys = {
        row[_PK]: key_of(
            row,
            Job.taking_long(status=row[_STATUS], sent_at=row[_SENT]),
            may_manage(row[_SUBMITTER], row[_TEAM]),
        )
        for row in rows
    }
    kept = caches[CACHE_ALIAS].get_many(keys.values())
    html = {pk: kept[key] for pk, key in keys.items() if key in kept}
    missing = [pk for pk in keys if pk not in html]
    if missing:
        jobs = Job.objects.filter(pk__in=missing).select_related("submitted_by")
        html |= _render(jobs, may_manage=may_manage, key_of=key_of, oob=oob)
    # A job deleted between the two reads has no row; the page's next refresh drops it.
    # The HTML is our own template's output, escaped when it was rendered.
    return [mark_safe(html[row[_PK]]) for row in rows if row[_PK] in html]  # noqa: S308


def _render(
    jobs: Iterable[Job],
    *,
    may_manage: Callable[[int | None, int], bool],
    key_of: Callable[[Row, bool, bool], str],
    oob: bool,
) -> dict[int, str]:
    template = get_template(ROW_TEMPLATE)
    html, kept = {}, {}
    for job in jobs:
        manages = may_manage(job.submitted_by_id, job.team_id)
        html[job.pk] = template.render({"job": job, "may_manage": manages, "oob": oob})
        # Kept under the values it was rendered from, read from the job itself: were the job
        # changed since the page read its row, the row would still match its key.
        kept[key_of(_shown_by(job), job.is_taking_long, manages)] = html[job.pk]
    caches[CACHE_ALIAS].set_many(kept, ROW_CACHE_SECONDS)
    return html


def _shown_by(job: Job) -> Row:
    """A job's ``SHOWN`` values, as ``history_values`` reads them from the database."""
    values = []
    for lookup in SHOWN:
        value: Any = job
        for name in lookup.split("__"):
            value = getattr(value, name)
        # A status or mode just set on the job is an enum member; the database gives str.
        values.append(str(value) if isinstance(value, Enum) else value)
    return tuple(values)


def _keyer(oob: bool) -> Callable[[Row, bool, bool], str]:
    """The cache key of a row, for the language and time zone the page is rendered in."""
    reader = (translation.get_language(), timezone.get_current_timezone_name(), oob)

    def key_of(shown: Row, taking_long: bool, may_manage: bool) -> str:
        parts = repr((shown, taking_long, may_manage, reader)).encode()
        return "history-row:" + hashlib.md5(parts, usedforsecurity=False).hexdigest()

    return key_of
