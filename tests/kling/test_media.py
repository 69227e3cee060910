"""sniff_audio_format: recognising Kling's audio formats by their first bytes."""

import struct

import pytest

from tasks_app.kling.media import sniff_audio_format

MP3_FRAME = b"\xff\xfb\x90\x64" + b"\x00" * 60  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz
ADTS_FRAME = b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 40  # AAC LC, 44.1 kHz, no CRC


def id3_tag(payload_size: int = 20) -> bytes:
    # ID3v2.4 header: "ID3", version, flags, then a syncsafe size (7 bits per byte).
    syncsafe = bytes((payload_size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe + b"\x00" * payload_size


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    brands = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(brands)) + b"ftyp" + brands + b"\x00\x00\x00\x08free"


def wav_header() -> bytes:
    return b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<I", 16) + b"\x01\x00"


class TestRecognisedFormats:
    @pytest.mark.parametrize(
        ("head", "expected"),
        [
            (id3_tag() + MP3_FRAME, "mp3"),
            (b"ID3\x03\x00\x00\x00\x00", "mp3"),  # a tag longer than what we were given
            (MP3_FRAME, "mp3"),
            (b"\xff\xf3\x84\x64" + b"\x00" * 10, "mp3"),  # MPEG-2 Layer III
            (wav_header(), "wav"),
            (ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), "m4a"),
            (ftyp(b"isom", b"iso2", b"mp41"), "m4a"),
            (ftyp(b"XXXX", b"M4A "), "m4a"),  # audio brand among the compatible ones
            (ADTS_FRAME, "aac"),
            (b"\xff\xf9\x50\x80" + b"\x00" * 10, "aac"),  # MPEG-2 ADTS
            (id3_tag() + ADTS_FRAME, "aac"),  # AAC streams may carry an ID3 tag too
        ],
        ids=[
            "mp3-id3",
            "mp3-id3-cut-short",
            "mp3-frame-sync",
            "mp3-mpeg2",
            "wav",
            "m4a-brand",
            "m4a-isom",
            "m4a-compatible-brand",
            "aac-adts",
            "aac-adts-mpeg2",
            "aac-behind-id3",
        ],
    )
    def test_it_names_the_format(self, head, expected):
        assert sniff_audio_format(head) == expected

    def test_it_accepts_a_bytearray(self):
        assert sniff_audio_format(bytearray(MP3_FRAME)) == "mp3"


class TestRejectedInput:
    @pytest.mark.parametrize(
        "head",
        [
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            b"Hello, this is plain text, not audio at all.",
            b"",
            b"\xff",
            b"RIFF\x24\x00\x00\x00AVI LIST",  # a RIFF file that is not WAVE
            ftyp(b"qt  ", b"qt  "),  # a QuickTime movie
            b"\xff\xfd\x90\x64",  # MPEG Layer II, not Layer III
            b"\xff\xfb\xf0\x64",  # Layer III sync with an invalid bitrate index
            b"\xff\xeb\x90\x64",  # reserved MPEG version
            b"<html><body>Not Found</body></html>",
            b"%PDF-1.7\n",
        ],
        ids=[
            "png",
            "text",
            "empty",
            "one-byte",
            "avi",
            "quicktime",
            "mp2",
            "bad-bitrate",
            "reserved-version",
            "html",
            "pdf",
        ],
    )
    def test_it_returns_none(self, head):
        assert sniff_audio_format(head) is None
