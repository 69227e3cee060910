"""The demo's sample source videos, as the job form offers them ("Try a sample video")."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from tasks_app.simulator.samples import SAMPLES, SAMPLES_PATH

register = template.Library()

# What each sample shows a person, by the simulator's file name.
LABELS: dict[str, Promise] = {
    "sample-ok.mp4": _("A face, 4 s: passes every check"),
    "sample-noface.mp4": _("No face in it: the studio warns"),
    "sample-too-long.mp4": _("12 s: too long for Kling"),
    "sample-too-small.mp4": _("320 × 240: too small for Kling"),  # noqa: RUF001 (a multiplication sign)
}


@dataclass(frozen=True, slots=True)
class SampleVideo:
    label: str | Promise
    #: The link the form's video link field gets: the simulator serves the file.
    url: str
    #: The form filled in with it, for a browser without JavaScript.
    form_url: str


@register.simple_tag
def sample_videos() -> list[SampleVideo]:
    """The simulator's sample videos in demo mode; none in live mode, where no simulator runs."""
    if not settings.KLING_DEMO:
        return []
    base = settings.KLING_SIMULATOR_URL.rstrip("/") + SAMPLES_PATH
    create = reverse("tasks:create")
    videos = []
    for sample in SAMPLES:
        url = base + sample.name
        query = urlencode({"video_source": "video_url", "video_url": url})
        videos.append(SampleVideo(LABELS.get(sample.name, sample.name), url, f"{create}?{query}"))
    return videos
