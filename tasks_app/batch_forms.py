"""The batch form: many rows, each judged by the single job form itself (``JobForm``).

A batch comes one of two ways: one source video and many lines of text, or a CSV table whose
header names some of the single form's fields. Either way each row becomes a bound ``JobForm``
made of the page's shared fields overlaid with the row's own values, so a row obeys exactly
the rules (and the media checks) of a job made alone. The batch is ready only when every row
is; otherwise each problem is listed as "Row 7, Voice: ...".
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.files.uploadedfile import UploadedFile
from django.utils.datastructures import MultiValueDict
from django.utils.translation import gettext_lazy as _

from tasks_app.forms import AudioSourceChoice, JobForm, VideoSourceChoice
from tasks_app.models import JobMode
from tasks_app.services.submitting import JobInput
from tasks_app.source_check import Staged, staged_token

# The columns a table may have: the single form's own field names.
CSV_COLUMNS = (
    "video_id",
    "video_url",
    "task_id",
    "mode",
    "text",
    "voice_id",
    "voice_language",
    "voice_speed",
    "audio_url",
)
# What the page itself gives every row (the rest of a row comes from its line or its cells).
SHARED_FIELDS = (
    "video_source",
    "video_id",
    "video_url",
    "task_id",
    "video_staged",
    "confirm_no_face",
    "voice_id",
    "voice_language",
    "voice_speed",
    # Once per batch: the consent the page's box gives covers every row.
    "consent",
)
# Errors on these fields are about the row's source video.
VIDEO_FIELDS = ("video_id", "video_url", "video_file", "video_staged", "task_id")
CSV_MAX_BYTES = 1024 * 1024

TEMPLATE_ROWS = (
    CSV_COLUMNS,
    (
        "860327812345678901",
        "",
        "",
        "text2video",
        "Hello Anna, welcome to the team!",
        "genshin_vindi2",
        "en",
        "1.0",
        "",
    ),
    (
        "",
        "https://example.com/clip.mp4",
        "",
        "audio2video",
        "",
        "",
        "",
        "",
        "https://example.com/greeting.mp3",
    ),
)


class BatchWay:
    LINES = "lines"
    TABLE = "table"
    CHOICES = (
        (LINES, _("One video, many lines")),
        (TABLE, _("A table (CSV file)")),
    )


class SharedFieldsForm(JobForm):
    """The page's fields that every row shares, kept and shown with their own field errors.

    It judges nothing across fields: each row's ``JobForm`` does, and the batch form puts an
    error that every row shares next to the shared field it is about.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["mode"].required = False

    def clean(self) -> dict:
        return self.cleaned_data


@dataclass(frozen=True)
class _Row:
    """One row as the person gave it: its number (from 1) and its own values."""

    number: int
    values: dict[str, str]


@dataclass
class _RowProblem:
    row: int
    field: str | None
    message: str


class BatchForm(forms.Form):
    """Field names are a contract, as the single form's are: scripts may post here too."""

    submission_key = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)
    way = forms.ChoiceField(
        label=_("How do you give the rows?"),
        choices=BatchWay.CHOICES,
        initial=BatchWay.LINES,
        widget=forms.RadioSelect,
        required=False,
    )
    lines = forms.CharField(
        label=_("Lines"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text=_(
            "One text per line: each non-empty line becomes one lip-sync of the same video, up "
            "to 120 characters each."
        ),
    )
    rows_csv = forms.FileField(
        label=_("Table (CSV file)"),
        required=False,
        widget=forms.FileInput(attrs={"accept": ".csv,text/csv"}),
        help_text=_(
            "UTF-8, comma or semicolon separated. The first row names the columns: any of "
            "video_id, video_url, task_id, mode, text, voice_id, voice_language, voice_speed, "
            "audio_url. A column not given, or an empty cell, takes the value of this page's "
            "field."
        ),
    )

    def __init__(
        self,
        data: Mapping | None = None,
        files: MultiValueDict | None = None,
        *,
        person_id: int | None = None,
        upload_too_big: bool = False,
        video_upload_too_big: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(data, files, **kwargs)
        self.person_id = person_id
        self.upload_too_big = upload_too_big
        self.shared = SharedFieldsForm(
            data,
            files,
            person_id=person_id,
            video_upload_too_big=video_upload_too_big,
            initial=kwargs.get("initial"),
        )
        # Filled by check_rows(): what the rows asked for, or what is wrong with them.
        self.job_inputs: list[JobInput] = []
        self.row_problems: list[str] = []
        self.csv_name = ""
        # The first row's form whose check found no face (its warning is shown once).
        self.face_form: JobForm | None = None
        self._staged: Staged | None = None
        self._checked = False

    # Field rules ------------------------------------------------------------------------------

    def clean_submission_key(self) -> uuid.UUID | None:
        try:
            return uuid.UUID(self.cleaned_data["submission_key"])
        except ValueError:
            return None

    def clean_rows_csv(self) -> UploadedFile | None:
        upload = self.cleaned_data.get("rows_csv")
        if self.upload_too_big or (upload and (upload.size or 0) > CSV_MAX_BYTES):
            raise forms.ValidationError(
                _("The table is larger than {kb} KB; split it into several batches.").format(
                    kb=CSV_MAX_BYTES // 1024
                ),
                code="too_big",
            )
        return upload or None

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
        chosen = data.get("way")
        has_lines = bool((data.get("lines") or "").strip())
        has_table = bool(data.get("rows_csv")) or "rows_csv" in self.errors
        if chosen == BatchWay.TABLE and has_table:
            way = BatchWay.TABLE
        elif chosen == BatchWay.LINES and has_lines:
            way = BatchWay.LINES
        elif has_table and not has_lines:
            way = BatchWay.TABLE
        elif has_lines:
            way = BatchWay.LINES
        else:
            way = chosen or BatchWay.LINES
        data["way"] = way
        return data

    # The rows ---------------------------------------------------------------------------------

    def check_rows(self) -> None:
        """Read the rows and judge each with its own ``JobForm`` (sources read as the single
        form reads them); call after ``is_valid()``."""
        if self._checked or not self.is_valid():
            return
        self._checked = True
        self.shared.is_valid()
        rows = self._rows()
        if rows is None:
            return
        field = "rows_csv" if self.cleaned_data["way"] == BatchWay.TABLE else "lines"
        if not rows:
            if self.cleaned_data["way"] == BatchWay.TABLE:
                self.add_error(field, _("The table has a header but no rows."))
            else:
                self.add_error(field, _("Type at least one line: each line is one lip-sync."))
            return
        if len(rows) > settings.BATCH_MAX_ROWS:
            self.add_error(
                field,
                _("A batch may have at most {max} rows; this one has {n}.").format(
                    max=settings.BATCH_MAX_ROWS, n=len(rows)
                ),
            )
            return
        self._judge(rows)

    @property
    def ready(self) -> bool:
        """Every row passed and nothing is left to confirm: the batch may be saved."""
        return (
            self._checked
            and self.is_valid()
            and bool(self.job_inputs)
            and not self.row_problems
            and not self.shared.errors
            and self.face_form is None
        )

    @property
    def staged_token(self) -> str:
        """The checked upload, for the page shown again to carry (empty without one)."""
        staged = self._staged or self.shared._cleaned("video_staged")
        if not isinstance(staged, Staged):
            return ""
        return staged_token(staged=staged, person_id=self.person_id)

    def submission_key_value(self) -> uuid.UUID:
        if not self.cleaned_data.get("submission_key"):
            self.cleaned_data["submission_key"] = uuid.uuid4()
        return self.cleaned_data["submission_key"]

    def _rows(self) -> list[_Row] | None:
        if self.cleaned_data["way"] == BatchWay.LINES:
            lines = (self.cleaned_data.get("lines") or "").splitlines()
            texts = [line.strip() for line in lines if line.strip()]
            return [_Row(number, {"text": text}) for number, text in enumerate(texts, start=1)]
        upload = self.cleaned_data.get("rows_csv")
        if upload is None:
            if "rows_csv" not in self.errors:
                self.add_error("rows_csv", _("Choose a CSV file, or give lines of text above."))
            return None
        self.csv_name = upload.name or ""
        return self._read_table(upload)

    def _read_table(self, upload: UploadedFile) -> list[_Row] | None:
        upload.seek(0)
        raw = upload.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            self.add_error(
                "rows_csv",
                _("The table is not UTF-8 text. Save it as “CSV UTF-8” and choose it again."),
            )
            return None
        header_line = next((line for line in text.splitlines() if line.strip()), "")
        if not header_line:
            self.add_error("rows_csv", _("The table is empty."))
            return None
        try:
            dialect = csv.Sniffer().sniff(header_line, delimiters=",;")
            delimiter = dialect.delimiter
        except csv.Error:
            delimiter = ","  # one column: any delimiter reads it
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        try:
            records = [record for record in reader if any(cell.strip() for cell in record)]
        except csv.Error as err:
            self.add_error(
                "rows_csv", _("The table could not be read: {reason}.").format(reason=err)
            )
            return None
        if not records:
            self.add_error("rows_csv", _("The table is empty."))
            return None
        header = [name.strip().lower() for name in records[0]]
        unknown = [name for name in header if name not in CSV_COLUMNS]
        if unknown:
            self.add_error(
                "rows_csv",
                _("Unknown column “{name}” in the table's header. Columns may be: {names}.").format(
                    name=unknown[0], names=", ".join(CSV_COLUMNS)
                ),
            )
            return None
        twice = sorted({name for name in header if header.count(name) > 1})
        if twice:
            self.add_error(
                "rows_csv",
                _("The column “{name}” appears twice in the table's header.").format(name=twice[0]),
            )
            return None
        rows = []
        for number, record in enumerate(records[1:], start=1):
            if len(record) > len(header):
                self.row_problems.append(
                    _("Row {row}: it has more cells than the header has columns.").format(
                        row=number
                    )
                )
            values = {
                name: cell.strip()
                for name, cell in zip(header, record, strict=False)
                if cell.strip()
            }
            rows.append(_Row(number, values))
        return rows

    def _row_data(self, row: _Row, *, staged: str) -> dict[str, str]:
        """The row's data as the single form would receive it: the page's shared fields, then
        the row's own values."""
        page = self.data
        data = {name: page.get(name, "") for name in SHARED_FIELDS}
        data["mode"] = JobMode.TEXT
        data["audio_source"] = AudioSourceChoice.URL
        if staged:
            data["video_staged"] = staged
        own = dict(row.values)
        if "mode" not in own and own.get("audio_url") and not own.get("text"):
            own["mode"] = JobMode.AUDIO
        # A row's own video replaces the page's, whichever source the page chose.
        if own.get("video_id") or own.get("video_url"):
            data |= {"video_id": "", "video_url": "", "video_staged": "", "task_id": ""}
            data["video_source"] = (
                VideoSourceChoice.ID if own.get("video_id") else VideoSourceChoice.URL
            )
        return data | own

    def _judge(self, rows: list[_Row]) -> None:
        problems: list[_RowProblem] = []
        inputs: list[JobInput] = []
        # Each distinct source video is read once: a failure is remembered for the rows that
        # share it (a success is cached by source_check), and an upload is stored by the first
        # row that uses it, the others naming the stored file.
        failed: dict[tuple[str, str], list[tuple[str | None, str]]] = {}
        upload_used = False
        staged = ""
        for row in rows:
            data = self._row_data(row, staged=staged)
            uses_page_file = not (row.values.get("video_id") or row.values.get("video_url"))
            files = None
            if uses_page_file and not upload_used and not staged:
                files = self.files
                upload_used = True
            form = JobForm(
                data,
                files,
                person_id=self.person_id,
                video_upload_too_big=self.shared.video_upload_too_big,
            )
            form.is_valid()
            source = self._source_key(form, uses_page_file=uses_page_file)
            if source in failed:
                errors = [(name, msg) for name, msg in _errors(form) if name not in VIDEO_FIELDS]
                errors += failed[source]
            else:
                before = {name for name, _msg in _errors(form)}
                form.check_sources()
                errors = _errors(form)
                if uses_page_file and form.check.staged and not staged:
                    self._staged = form.check.staged
                    staged = staged_token(staged=form.check.staged, person_id=self.person_id)
                video_errors: list[tuple[str | None, str]] = [
                    (name, msg)
                    for name, msg in errors
                    if name in VIDEO_FIELDS and name not in before
                ]
                if video_errors:
                    failed[source] = video_errors
            problems += [_RowProblem(row.number, name, msg) for name, msg in errors]
            if form.check.needs_confirmation and self.face_form is None:
                self.face_form = form
            if not errors:
                inputs.append(form.to_job_input())
        self._report(problems, rows=rows)
        if not self.row_problems and not self.shared.errors:
            self.job_inputs = inputs

    @staticmethod
    def _source_key(form: JobForm, *, uses_page_file: bool) -> tuple[str, str]:
        data = getattr(form, "cleaned_data", {})
        source = data.get("video_source") or ""
        if source == VideoSourceChoice.URL:
            return source, data.get("video_url") or ""
        if source == VideoSourceChoice.ID:
            return source, data.get("video_id") or ""
        return "page-file" if uses_page_file else source, ""

    def _report(self, problems: list[_RowProblem], *, rows: list[_Row]) -> None:
        """Problems that every row has, on a field that no row gives itself, go once next to
        the page's field; the others are listed by row."""
        own_fields = {name for row in rows for name in row.values}
        counts: dict[tuple[str | None, str], int] = {}
        for problem in problems:
            key = (problem.field, problem.message)
            counts[key] = counts.get(key, 0) + 1
        shown_on_page: set[tuple[str | None, str]] = set()
        for problem in problems:
            key = (problem.field, problem.message)
            if (
                problem.field in (*SHARED_FIELDS, "video_file")
                and problem.field not in own_fields
                and counts[key] == len(rows)
            ):
                if key not in shown_on_page:
                    shown_on_page.add(key)
                    existing = list(self.shared.errors.get(problem.field or "", []))
                    if problem.message not in existing:
                        self.shared.add_error(problem.field, problem.message)
                continue
            self.row_problems.append(self._describe(problem))

    @staticmethod
    def _describe(problem: _RowProblem) -> str:
        field = JobForm.base_fields.get(problem.field or "")
        label = field.label if field else None
        if label is None:
            return _("Row {row}: {message}").format(row=problem.row, message=problem.message)
        return _("Row {row}, {field}: {message}").format(
            row=problem.row, field=label, message=problem.message
        )


def _errors(form: JobForm) -> list[tuple[str | None, str]]:
    """A form's errors as (field, message) pairs; None for the form-wide ones."""
    return [
        (None if name == NON_FIELD_ERRORS else name, str(message))
        for name, messages in form.errors.items()
        for message in messages
    ]


def template_rows() -> tuple[tuple[str, ...], ...]:
    """The example table offered for download: the header and two example rows."""
    return TEMPLATE_ROWS
