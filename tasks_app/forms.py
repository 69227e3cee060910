"""The job form: Kling's limits checked here, before anything is saved or any credit is spent."""

from __future__ import annotations

import re
import unicodedata
import uuid
from decimal import Decimal

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from tasks_app.kling.media import sniff_audio_format
from tasks_app.kling.voices import VOICES, get_voice
from tasks_app.models import JobMode, Profile, VoiceLanguage
from tasks_app.services.submitting import JobInput
from tasks_app.validators import validate_audio_link, validate_video_link

TEXT_MAX_CHARS = 120
SPEED_MIN, SPEED_MAX = Decimal("0.8"), Decimal("2.0")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


class VideoSourceChoice:
    ID = "video_id"
    URL = "video_url"
    CHOICES = (
        (ID, _("A video made in Kling (its ID)")),
        (URL, _("A link to a video file")),
    )


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


class JobForm(forms.Form):
    """One form for both paths; field names are Kling's, so scripts can post to it too."""

    submission_key = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)
    video_source = forms.ChoiceField(
        label=_("Source video"),
        choices=VideoSourceChoice.CHOICES,
        initial=VideoSourceChoice.ID,
        widget=forms.RadioSelect,
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

    def __init__(self, *args, upload_too_big: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Set when the upload handler stopped reading an audio file past the limit.
        self.upload_too_big = upload_too_big
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
        # Without JavaScript both boxes are visible: the chosen one wins when both are filled.
        if chosen == VideoSourceChoice.ID and video_id:
            data["video_url"] = ""
        elif chosen == VideoSourceChoice.URL and video_url:
            data["video_id"] = data["task_id"] = ""
        elif video_id and video_url:
            self.add_error("video_url", _("Give either a Kling video ID or a link, not both."))
        elif not video_id and not video_url and "video_id" not in self.errors:
            if "video_url" in self.errors:
                return
            field = "video_url" if chosen == VideoSourceChoice.URL else "video_id"
            self.add_error(field, _("Give the source video: a Kling video ID or a link to it."))

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

    def to_job_input(self) -> JobInput:
        data = self.cleaned_data
        upload = data.get("audio_file")
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
        )

    def submission_key_value(self) -> uuid.UUID:
        # A script that posts without a key gets one per valid form, fixed once chosen.
        if not self.cleaned_data.get("submission_key"):
            self.cleaned_data["submission_key"] = uuid.uuid4()
        return self.cleaned_data["submission_key"]


class AccountForm(forms.ModelForm):
    class Meta:
        model = Profile
        fields = ["email_when_done"]
