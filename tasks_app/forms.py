"""The job form: Kling's limits checked here, before anything is saved or any credit is spent."""

from __future__ import annotations

import base64
import dataclasses
import re
import unicodedata
import uuid
from decimal import Decimal

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from tasks_app import source_check, storage, wording
from tasks_app.fetch import FetchError
from tasks_app.kling.media import sniff_audio_format
from tasks_app.kling.voices import VOICES, get_voice
from tasks_app.models import JobMode, Profile, VoiceLanguage
from tasks_app.probe import (
    AudioFacts,
    MediaError,
    VideoFacts,
    audio_refusals_by_settings,
    audio_warnings,
    video_refusals_by_settings,
)
from tasks_app.services.sharing import SHARE_DAYS_DEFAULT, SHARE_DAYS_MAX, SHARE_DAYS_MIN
from tasks_app.services.submitting import JobInput
from tasks_app.source_check import Staged, staged_from_token, staged_token
from tasks_app.validators import validate_audio_link, validate_video_link

TEXT_MAX_CHARS = 120
SPEED_MIN, SPEED_MAX = Decimal("0.8"), Decimal("2.0")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


class VideoSourceChoice:
    ID = "video_id"
    URL = "video_url"
    FILE = "video_file"
    CHOICES = (
        (ID, _("A video made in Kling (its ID)")),
        (URL, _("A link to a video file")),
        (FILE, _("A video file from my computer")),
    )


def file_choice_available() -> bool:
    """Kling only takes links, so an uploaded video reaches it as a link to the studio: that
    needs the studio's public address, or demo mode (whose simulator runs next to it), or a
    bucket (Kling then reads a presigned link to the object)."""
    return bool(settings.KLING_DEMO or settings.SITE_URL or storage.bucket() is not None)


FILE_CHOICE_UNAVAILABLE = _(
    "Not available here: Kling downloads the file from the studio, and the studio has no "
    "public address (SITE_URL) set."
)


class SourceRadioSelect(forms.RadioSelect):
    """Radio buttons of which some may be shown but not chosen."""

    disabled_values: frozenset[str] = frozenset()

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if value in self.disabled_values:
            option["attrs"]["disabled"] = True
        return option


class AudioSourceChoice:
    FILE = "file"
    URL = "url"
    CHOICES = ((FILE, _("Upload an audio file")), (URL, _("A link to an audio file")))


def voice_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """Voices grouped by the language they speak, named in the page's language."""
    lang = "zh" if (get_language() or "en").startswith("zh") else "en"
    groups = []
    for code, label in VoiceLanguage.choices:
        voices = [(v.id, v.name(lang)) for v in VOICES if v.speaks(code)]
        groups.append((str(label), voices))
    return groups


# The zero-width joiner is a format character, but it is how emoji such as 👩‍💻 are built.
_EMOJI_JOINER = "\u200d"


def _has_control_characters(text: str) -> bool:
    return any(
        unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") and ch != _EMOJI_JOINER for ch in text
    )


@dataclasses.dataclass(kw_only=True)
class SourceCheck:
    """What the studio read of a form's sources, for the page and for the job."""

    video: VideoFacts | None = None
    audio: AudioFacts | None = None
    # The checked upload, kept in storage so the page need not ask for it again.
    staged: Staged | None = None
    refused: bool = False
    face_warning: str = ""
    # No face was found and the person has not ticked confirm_no_face yet.
    needs_confirmation: bool = False
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def poster_uri(self) -> str:
        # Inline, so the preview needs no second request (the page's CSP allows data: images).
        return _jpeg_uri(self.video.poster_jpeg) if self.video else ""

    @property
    def frames(self) -> list[tuple[float, str]]:
        """The frames looked at for a face: where in the clip, and the picture."""
        if not self.video:
            return []
        return [
            (time, _jpeg_uri(thumb))
            for time, thumb in zip(self.video.frame_times, self.video.frame_thumbs, strict=False)
        ]


def _jpeg_uri(jpeg: bytes | None) -> str:
    return f"data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}" if jpeg else ""


class JobForm(forms.Form):
    """One form for both paths; field names are Kling's, so scripts can post to it too."""

    submission_key = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)
    video_source = forms.ChoiceField(
        label=_("Source video"),
        choices=VideoSourceChoice.CHOICES,
        initial=VideoSourceChoice.ID,
        widget=SourceRadioSelect,
        required=False,
    )
    video_id = forms.CharField(
        label=_("Kling video ID"),
        required=False,
        max_length=128,
        help_text=_(
            "The ID of a 5 s or 10 s video Kling made in the last 30 days (a video ID, not a "
            "task ID)."
        ),
    )
    task_id = forms.CharField(
        label=_("Parent task ID (optional)"),
        required=False,
        max_length=128,
        help_text=_("Only if your Kling provider asks for it: the task that made this video."),
    )
    video_url = forms.CharField(
        label=_("Video link"),
        required=False,
        max_length=2000,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/clip.mp4"}),
    )
    video_file = forms.FileField(
        label=_("Video file"),
        required=False,
        widget=forms.FileInput(attrs={"accept": ".mp4,.mov,video/mp4,video/quicktime"}),
    )
    # A checked upload kept in storage: its signed token (tasks_app.source_check).
    video_staged = forms.CharField(widget=forms.HiddenInput, required=False, max_length=2000)
    confirm_no_face = forms.BooleanField(
        label=_("Send it anyway (Kling may refuse a video in which it finds no face)"),
        required=False,
    )
    mode = forms.ChoiceField(
        label=_("What should they say?"),
        choices=JobMode.choices,
        initial=JobMode.TEXT,
        widget=forms.RadioSelect,
    )
    text = forms.CharField(
        label=_("Text"),
        required=False,
        strip=True,
        max_length=2000,  # a friendly message for 121-2000 characters; Django's beyond that
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": TEXT_MAX_CHARS}),
        help_text=_("Up to 120 characters."),
    )
    voice_id = forms.ChoiceField(label=_("Voice"), required=False)
    voice_language = forms.ChoiceField(
        label=_("Language"), choices=VoiceLanguage.choices, initial="en", required=False
    )
    voice_speed = forms.DecimalField(
        label=_("Speed"),
        required=False,
        initial=Decimal("1.0"),
        widget=forms.NumberInput(attrs={"min": "0.8", "max": "2.0", "step": "0.1"}),
        help_text=_("From 0.8 (slower) to 2.0 (faster); 1.0 is normal."),
    )
    audio_source = forms.ChoiceField(
        label=_("Audio track"),
        choices=AudioSourceChoice.CHOICES,
        initial=AudioSourceChoice.FILE,
        widget=forms.RadioSelect,
        required=False,
    )
    audio_file = forms.FileField(
        label=_("Audio file"),
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".mp3,.wav,.m4a,.aac,audio/*"}),
    )
    audio_url = forms.CharField(
        label=_("Audio link"),
        required=False,
        max_length=2000,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/voice.mp3"}),
    )

    consent = forms.BooleanField(
        label=_("The person in this video agreed to it being lip-synced"),
        required=True,
        error_messages={
            "required": _(
                "Tick this box to confirm that the person in the video agreed to it being "
                "lip-synced; the studio records who confirmed it and when."
            )
        },
    )

    def __init__(
        self,
        *args,
        upload_too_big: bool = False,
        video_upload_too_big: bool = False,
        person_id: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Set when the upload handler stopped reading an audio file past the limit.
        self.upload_too_big = upload_too_big
        # Set when the upload handler dropped a video file past the limit.
        self.video_upload_too_big = video_upload_too_big
        # Staged uploads are named to the person who uploaded them only.
        self.person_id = person_id
        # What check_sources() found; the page shows it and to_job_input() stores it.
        self.check = SourceCheck()
        self.file_choice_available = file_choice_available()
        self.file_choice_unavailable = FILE_CHOICE_UNAVAILABLE
        source = self.fields["video_source"].widget
        assert isinstance(source, SourceRadioSelect)
        if not self.file_choice_available:
            source.disabled_values = frozenset({VideoSourceChoice.FILE})
            self.fields["video_file"].disabled = True
            self.fields["video_file"].help_text = FILE_CHOICE_UNAVAILABLE
        else:
            self.fields["video_file"].help_text = _(
                "An MP4 or MOV file, {min_s}-{max_s} seconds long, at most {mb:g} MB, each side "
                "{min_px}-{max_px} pixels, showing one person's face."
            ).format(
                min_s=settings.KLING_VIDEO_MIN_SECONDS,
                max_s=settings.KLING_VIDEO_MAX_SECONDS,
                mb=settings.KLING_VIDEO_MAX_BYTES / (1024 * 1024),
                min_px=settings.KLING_VIDEO_MIN_SIDE,
                max_px=settings.KLING_VIDEO_MAX_SIDE,
            )
        voice = self.fields["voice_id"]
        assert isinstance(voice, forms.ChoiceField)
        voice.choices = [("", _("Choose a voice")), *voice_choices()]
        max_mb = settings.KLING_MAX_AUDIO_BYTES / (1024 * 1024)
        self.fields["audio_file"].help_text = _("MP3, WAV, M4A or AAC, at most {mb:g} MB.").format(
            mb=max_mb
        )
        self.fields["audio_url"].help_text = _(
            "A link to an MP3, WAV, M4A or AAC file, at most {mb:g} MB."
        ).format(mb=max_mb)
        self.fields["video_url"].help_text = _(
            "A link to an .mp4 or .mov file, {min_s}-{max_s} seconds long, at most 100 MB, each "
            "side {min_px}-{max_px} pixels (720p or 1080p), showing one person's face."
        ).format(
            min_s=settings.KLING_VIDEO_MIN_SECONDS,
            max_s=settings.KLING_VIDEO_MAX_SECONDS,
            min_px=settings.KLING_VIDEO_MIN_SIDE,
            max_px=settings.KLING_VIDEO_MAX_SIDE,
        )

    # Field rules ------------------------------------------------------------------------------

    def clean_submission_key(self) -> uuid.UUID | None:
        # A mangled key is no reason to turn the person away: the job gets a fresh one.
        try:
            return uuid.UUID(self.cleaned_data["submission_key"])
        except ValueError:
            return None

    def clean_video_id(self) -> str:
        value = self.cleaned_data["video_id"].strip()
        if value and not _ID_PATTERN.match(value):
            raise forms.ValidationError(
                _("A Kling video ID has only letters, digits, '-' and '_'."), code="invalid"
            )
        return value

    def clean_task_id(self) -> str:
        value = self.cleaned_data["task_id"].strip()
        if value and not _ID_PATTERN.match(value):
            raise forms.ValidationError(
                _("A task ID has only letters, digits, '-' and '_'."), code="invalid"
            )
        return value

    def clean_video_file(self) -> UploadedFile | None:
        upload = self.cleaned_data.get("video_file")
        if not upload:
            return None
        if upload.size is None or upload.size > settings.KLING_VIDEO_MAX_BYTES:
            raise self._video_too_big()
        if upload.size == 0:
            raise forms.ValidationError(_("The video file is empty."), code="empty")
        return upload

    def clean_video_staged(self) -> Staged | None:
        # A token that is not valid (tampered, too old, someone else's) names no file: the
        # person is asked for the file again, as if there had been none.
        return staged_from_token(token=self.cleaned_data["video_staged"], person_id=self.person_id)

    def clean_video_url(self) -> str:
        value = self.cleaned_data["video_url"].strip()
        if value:
            validate_video_link(value)
        return value

    def clean_audio_url(self) -> str:
        value = self.cleaned_data["audio_url"].strip()
        if value:
            validate_audio_link(value)
        return value

    def clean_text(self) -> str:
        value = self.cleaned_data["text"]
        if _has_control_characters(value.replace("\n", " ").replace("\r", "").replace("\t", " ")):
            raise forms.ValidationError(
                _("The text contains invisible control characters; please retype it."),
                code="control",
            )
        value = " ".join(value.split())  # Kling reads one line; newlines become spaces
        if len(value) > TEXT_MAX_CHARS:
            raise forms.ValidationError(
                _("Kling takes at most %(max)d characters; this text has %(count)d."),
                code="max_length",
                params={"max": TEXT_MAX_CHARS, "count": len(value)},
            )
        return value

    def clean_voice_speed(self) -> Decimal | None:
        value = self.cleaned_data["voice_speed"]
        if value is None:
            return None
        if not value.is_finite() or not (SPEED_MIN <= value <= SPEED_MAX):
            raise forms.ValidationError(_("Choose a speed from 0.8 to 2.0."), code="range")
        if value != value.quantize(Decimal("0.1")):
            raise forms.ValidationError(
                _("Use one decimal place, for example 1.2."), code="precision"
            )
        return value.quantize(Decimal("0.1"))

    def clean_audio_file(self) -> UploadedFile | None:
        upload = self.cleaned_data.get("audio_file")
        if not upload:
            return None
        if upload.size is None or upload.size > settings.KLING_MAX_AUDIO_BYTES:
            raise self._too_big()
        if upload.size == 0:
            raise forms.ValidationError(_("The audio file is empty."), code="empty")
        upload.seek(0)
        head = upload.read(64)
        upload.seek(0)
        if sniff_audio_format(head) is None:
            raise forms.ValidationError(
                _("This file is not MP3, WAV, M4A or AAC audio."), code="not_audio"
            )
        return upload

    # Rules across fields ----------------------------------------------------------------------

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
        self._clean_video(data)
        if data.get("mode") == JobMode.TEXT:
            self._clean_text_mode(data)
        elif data.get("mode") == JobMode.AUDIO:
            self._clean_audio_mode(data)
        return data

    def _clean_video(self, data: dict) -> None:
        video_id, video_url = data.get("video_id"), data.get("video_url")
        chosen = data.get("video_source")
        # A staged file stays on the page whatever is chosen; it counts only when it may be
        # what the person means.
        staged = data.get("video_staged") if chosen in ("", VideoSourceChoice.FILE) else None
        has_file = bool(data.get("video_file") or staged)
        if (chosen == VideoSourceChoice.FILE or has_file) and not self.file_choice_available:
            self.add_error("video_file", FILE_CHOICE_UNAVAILABLE)
            return
        # Without JavaScript every box is visible: the chosen one wins when several are filled.
        if chosen == VideoSourceChoice.ID and video_id:
            self._use_video_source(data, VideoSourceChoice.ID)
        elif chosen == VideoSourceChoice.URL and video_url:
            self._use_video_source(data, VideoSourceChoice.URL)
        elif chosen == VideoSourceChoice.FILE and has_file:
            self._use_video_source(data, VideoSourceChoice.FILE)
        elif chosen == VideoSourceChoice.FILE and self.video_upload_too_big:
            self.add_error("video_file", self._video_too_big())
        elif video_id and video_url and not has_file:
            self.add_error("video_url", _("Give either a Kling video ID or a link, not both."))
        elif sum(map(bool, (video_id, video_url, has_file))) > 1:
            field = "video_file" if chosen == VideoSourceChoice.FILE else "video_url"
            self.add_error(
                field, _("Give one source video: a Kling video ID, a link or a file, not two.")
            )
        elif video_id or video_url or has_file:
            given = (
                VideoSourceChoice.ID
                if video_id
                else VideoSourceChoice.URL
                if video_url
                else VideoSourceChoice.FILE
            )
            self._use_video_source(data, given)
        elif not ({"video_id", "video_url", "video_file"} & set(self.errors)):
            if self.video_upload_too_big:
                self.add_error("video_file", self._video_too_big())
                return
            named = (VideoSourceChoice.URL, VideoSourceChoice.FILE)
            field = chosen if chosen in named else "video_id"
            self.add_error(
                field, _("Give the source video: a Kling video ID, a link to it, or the file.")
            )

    @staticmethod
    def _use_video_source(data: dict, source: str) -> None:
        """Keep the chosen source and drop the others (a staged file stays on the page)."""
        data["video_source"] = source
        if source != VideoSourceChoice.ID:
            data["video_id"] = data["task_id"] = ""
        if source != VideoSourceChoice.URL:
            data["video_url"] = ""
        if source != VideoSourceChoice.FILE:
            data["video_file"] = None

    def _video_too_big(self) -> forms.ValidationError:
        return forms.ValidationError(
            _("The video file is larger than {mb:g} MB, Kling's limit.").format(
                mb=settings.KLING_VIDEO_MAX_BYTES / (1024 * 1024)
            ),
            code="too_big",
        )

    def _clean_text_mode(self, data: dict) -> None:
        if not data.get("text") and "text" not in self.errors:
            self.add_error("text", _("Type what the person in the video should say."))
        voice = get_voice(data.get("voice_id") or "")
        if voice is None:
            if "voice_id" not in self.errors:
                self.add_error("voice_id", _("Choose a voice."))
            return
        language = data.get("voice_language")
        if not language:
            data["voice_language"] = language = voice.languages[0]
        if not voice.speaks(language):
            self.add_error(
                "voice_language",
                _("{voice} does not speak {language}; choose {other}.").format(
                    voice=voice.name(language),
                    language=VoiceLanguage(language).label,
                    other=VoiceLanguage(voice.languages[0]).label,
                ),
            )
        if data.get("voice_speed") is None and "voice_speed" not in self.errors:
            data["voice_speed"] = Decimal("1.0")

    def _too_big(self) -> forms.ValidationError:
        return forms.ValidationError(
            _("The audio file is larger than {mb:g} MB, Kling's limit.").format(
                mb=settings.KLING_MAX_AUDIO_BYTES / (1024 * 1024)
            ),
            code="too_big",
        )

    def _clean_audio_mode(self, data: dict) -> None:
        upload, url = data.get("audio_file"), data.get("audio_url")
        if self.upload_too_big:
            # The file was dropped unread, so there is "no audio track": say why instead.
            self.add_error("audio_file", self._too_big())
            return
        if "audio_file" in self.errors or "audio_url" in self.errors:
            return
        chosen = data.get("audio_source")
        if chosen == AudioSourceChoice.FILE and upload:
            data["audio_url"] = ""
        elif chosen == AudioSourceChoice.URL and url:
            data["audio_file"] = None
        elif upload and url:
            self.add_error("audio_url", _("Give either an audio file or a link, not both."))
        elif not upload and not url:
            field = "audio_url" if chosen == AudioSourceChoice.URL else "audio_file"
            self.add_error(field, _("Add the audio track: upload a file or give a link."))

    # What the studio reads of the sources --------------------------------------------------

    def check_sources(self) -> None:
        """Read the chosen source video and audio track, once the form's own rules have run
        (``is_valid()``); refusals go next to their field.

        It reads whatever passed the form's rules, even when another field has an error, so
        that a page shown again already shows (and keeps) the checked video. A Kling video ID
        cannot be read: only Kling has it.
        """
        data = getattr(self, "cleaned_data", None)
        if data is None:
            return
        self._check_video(data)
        if data.get("mode") == JobMode.AUDIO:
            self._check_audio(data)

    @property
    def ready(self) -> bool:
        """Valid, read, and nothing left to confirm: the job may be saved."""
        return self.is_valid() and not self.check.needs_confirmation

    @property
    def staged_token(self) -> str:
        """The token of the staged upload for the page to carry (empty without one)."""
        if not self.is_bound:
            # A form filled in from an earlier job carries that job's file (see the view).
            return str(self.initial.get("video_staged") or "")
        staged = self.check.staged or self._cleaned("video_staged")
        if not isinstance(staged, Staged):
            return ""
        return staged_token(staged=staged, person_id=self.person_id)

    def _cleaned(self, name: str) -> object:
        return getattr(self, "cleaned_data", {}).get(name)

    @property
    def video_errors(self) -> list[str]:
        """The source video's errors, for the check's answer (the page shows them by field);
        none before the person has given a video, which is no mistake while filling in."""
        return self._given_errors("video_id", "video_url", "video_file", "video_staged")

    @property
    def audio_errors(self) -> list[str]:
        return self._given_errors("audio_file", "audio_url")

    def _given_errors(self, *names: str) -> list[str]:
        if not any(self.data.get(name) or self.files.get(name) for name in names):
            return []
        return [str(error) for name in names for error in self.errors.get(name, [])]

    def _check_video(self, data: dict) -> None:
        source = data.get("video_source")
        check = self.check
        try:
            if source == VideoSourceChoice.URL and data.get("video_url"):
                field = "video_url"
                check.video = source_check.video_facts_of_link(url=data["video_url"])
            elif source == VideoSourceChoice.FILE and data.get("video_file"):
                field = "video_file"
                upload = data["video_file"]
                check.video = source_check.video_facts_of_upload(upload=upload)
            elif source == VideoSourceChoice.FILE and data.get("video_staged"):
                field = "video_file"
                check.staged = data["video_staged"]
                check.video = source_check.video_facts_of_staged(staged=data["video_staged"])
            else:  # a Kling video ID, which only Kling can read, or no video yet
                return
        except (FetchError, MediaError) as err:
            self.add_error(field, wording.render(err.message))
            return
        refusals = video_refusals_by_settings(facts=check.video)
        for refusal in refusals:
            self.add_error(field, wording.render(refusal))
        if refusals:
            check.refused = True
            return
        if field == "video_file" and data.get("video_file"):
            check.staged = source_check.video_stage(upload=data["video_file"], facts=check.video)
        if check.video.face_found is False:
            check.face_warning = _(
                "The studio found no face in the {count} frames it looked at, spread across "
                "the clip. Kling needs one person's face, clearly visible, or it refuses the "
                "video."
            ).format(count=check.video.frames_checked)
            check.needs_confirmation = not data.get("confirm_no_face")

    def _check_audio(self, data: dict) -> None:
        check = self.check
        try:
            if data.get("audio_file"):
                field = "audio_file"
                check.audio = source_check.audio_facts_of_upload(upload=data["audio_file"])
            elif data.get("audio_url"):
                field = "audio_url"
                check.audio = source_check.audio_facts_of_link(url=data["audio_url"])
            else:
                return
        except (FetchError, MediaError) as err:
            self.add_error(field, wording.render(err.message))
            return
        refusals = audio_refusals_by_settings(facts=check.audio)
        for refusal in refusals:
            self.add_error(field, wording.render(refusal))
        video_seconds = check.video.duration if check.video else None
        check.warnings += [
            wording.render(warning)
            for warning in audio_warnings(
                audio_seconds=check.audio.duration, video_seconds=video_seconds
            )
        ]

    def to_job_input(self) -> JobInput:
        data = self.cleaned_data
        upload = data.get("audio_file")
        video, staged = self.check.video, self.check.staged
        if data.get("video_source") == VideoSourceChoice.FILE:
            # check_sources() stored the upload; without a check, the service stores it.
            video_upload = None if staged else data.get("video_file")
        else:
            video_upload, staged = None, None
        face_found = video.face_found if video else None
        return JobInput(
            mode=data["mode"],
            video_id=data.get("video_id", ""),
            video_url=data.get("video_url", ""),
            parent_task_id=data.get("task_id", "") if data.get("video_id") else "",
            text=data.get("text", ""),
            voice_id=data.get("voice_id", ""),
            voice_language=data.get("voice_language", ""),
            voice_speed=data.get("voice_speed"),
            audio_url=data.get("audio_url", ""),
            audio_upload=upload,
            audio_name=upload.name if upload else "",
            video_stored_name=staged.name if staged else "",
            video_upload=video_upload,
            video_name=(
                staged.original if staged else video_upload.name or "" if video_upload else ""
            ),
            video_duration=video.duration if video else None,
            video_width=video.width if video else None,
            video_height=video.height if video else None,
            video_bytes=video.size if video else None,
            face_found=face_found,
            confirmed_no_face=face_found is False and bool(data.get("confirm_no_face")),
            poster_jpeg=video.poster_jpeg if video else None,
            audio_duration=self.check.audio.duration if self.check.audio else None,
            consent=bool(data.get("consent")),
        )

    def submission_key_value(self) -> uuid.UUID:
        # A script that posts without a key gets one per valid form, fixed once chosen.
        if not self.cleaned_data.get("submission_key"):
            self.cleaned_data["submission_key"] = uuid.uuid4()
        return self.cleaned_data["submission_key"]


class ShareForm(forms.Form):
    """How long a new share link stays valid (``services.sharing``)."""

    days = forms.IntegerField(
        label=_("Link valid for (days)"),
        min_value=SHARE_DAYS_MIN,
        max_value=SHARE_DAYS_MAX,
        initial=SHARE_DAYS_DEFAULT,
        help_text=_("From 1 to 30 days; you can revoke it at any time."),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        bounds = _("Choose from {min} to {max} days.").format(
            min=SHARE_DAYS_MIN, max=SHARE_DAYS_MAX
        )
        days = self.fields["days"]
        for code in ("required", "invalid", "min_value", "max_value"):
            days.error_messages[code] = bounds


class AccountForm(forms.ModelForm):
    class Meta:
        model = Profile
        fields = ["email_when_done"]
