"""Downloading a task's source video as Kling does, so that a link Kling could not read fails
the task in the demo too (``SimulatorConfig.fetch_sources``).

Only the start of the file is read: enough to see an MP4 or QuickTime box where a video
begins. The bytes are judged by that signature alone; the studio probes media itself.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from typing import Final
from urllib.parse import urlsplit

#: Asked for with a Range header; a server that ignores it is read no further than this.
SNIFF_BYTES: Final = 64 * 1024

# The boxes an MP4 or QuickTime file begins with: ``ftyp`` normally, and in older QuickTime
# files one of the others.
_FIRST_BOXES: Final = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})

# Kling-like reasons, as ``task_status_msg`` shows them.
DOWNLOAD_FAILED: Final = "Failed to download the video from video_url: {reason}"
NOT_A_VIDEO: Final = "The file at video_url is not a supported video (MP4 or MOV)"

_USER_AGENT: Final = "KlingSimulator/1.0 (source fetch)"


def looks_like_video(head: bytes) -> bool:
    """Whether ``head``, a file's first bytes, starts with an MP4/QuickTime box."""
    return len(head) >= 8 and head[4:8] in _FIRST_BOXES


def source_problem(url: str, *, timeout: float) -> str | None:
    """Download the start of ``url``; None when it is a video, else why not, in Kling's way.

    ``timeout`` bounds connecting and each read. No proxy from the environment is used: the
    demo fetches from this machine.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        return DOWNLOAD_FAILED.format(reason="not an http(s) link")
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        url, headers={"Range": f"bytes=0-{SNIFF_BYTES - 1}", "User-Agent": _USER_AGENT}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            head = response.read(SNIFF_BYTES)
    except urllib.error.HTTPError as err:
        err.close()
        return DOWNLOAD_FAILED.format(reason=f"the server answered HTTP {err.code}")
    except TimeoutError:
        return DOWNLOAD_FAILED.format(reason="the server did not answer in time")
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            return DOWNLOAD_FAILED.format(reason="the server did not answer in time")
        return DOWNLOAD_FAILED.format(reason="could not connect to the server")
    except (OSError, http.client.HTTPException):
        return DOWNLOAD_FAILED.format(reason="the connection broke off")
    if not looks_like_video(head):
        return NOT_A_VIDEO
    return None
