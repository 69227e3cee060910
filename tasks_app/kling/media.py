"""Recognising the audio formats Kling accepts (mp3, wav, m4a, aac) by their first bytes.

File names and browser-sent content types lie; magic bytes rarely do.
"""

from __future__ import annotations

# ISO base media "ftyp" brands of audio-capable MP4 files. ffmpeg writes "isom" for .m4a
# unless told otherwise, so the generic brands count too.
_M4A_BRANDS = frozenset(
    {b"M4A ", b"M4B ", b"M4P ", b"mp41", b"mp42", b"isom", b"iso2", b"iso4", b"iso5", b"iso6"}
)

_ID3_HEADER_LENGTH = 10


def sniff_audio_format(head: bytes | bytearray) -> str | None:
    """The audio format of a file starting with ``head``: "mp3", "wav", "m4a", "aac" or None.

    Pass the first few kilobytes: 12 bytes recognise every format, and more lets an
    ID3-tagged AAC file be told apart from an MP3 by looking past its tag.
    """
    head = bytes(head)
    if head.startswith(b"ID3"):
        # ID3 tags also precede AAC streams; the frames after the tag decide.
        after_tag = _skip_id3(head)
        return "aac" if after_tag is not None and _is_adts(after_tag) else "mp3"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if len(head) >= 12 and head[4:8] == b"ftyp" and _has_m4a_brand(head):
        return "m4a"
    if _is_adts(head):
        return "aac"
    if _is_mp3_frame(head):
        return "mp3"
    return None


def _skip_id3(head: bytes) -> bytes | None:
    if len(head) < _ID3_HEADER_LENGTH:
        return None
    size_bytes = head[6:10]
    if any(byte & 0x80 for byte in size_bytes):  # sizes are "syncsafe": 7 bits per byte
        return None
    size = (size_bytes[0] << 21) | (size_bytes[1] << 14) | (size_bytes[2] << 7) | size_bytes[3]
    has_footer = bool(head[5] & 0x10)
    end = _ID3_HEADER_LENGTH + size + (_ID3_HEADER_LENGTH if has_footer else 0)
    return head[end:] if len(head) > end else None


def _has_m4a_brand(head: bytes) -> bool:
    box_size = int.from_bytes(head[:4], "big")
    # Major brand at 8..12, then a minor version, then compatible brands up to the box's end.
    brands = [head[8:12]]
    end = min(box_size, len(head))
    brands += [head[i : i + 4] for i in range(16, end - 3, 4)]
    return any(brand in _M4A_BRANDS for brand in brands)


def _is_adts(head: bytes) -> bool:
    # 12-bit sync word 0xFFF, then the MPEG version bit, then layer bits that ADTS fixes at 00
    # (MP3 frames use 01..11 there): 0xFFF1 / 0xFFF9 without CRC, 0xFFF0 / 0xFFF8 with.
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0


def _is_mp3_frame(head: bytes) -> bool:
    if len(head) < 3 or head[0] != 0xFF or (head[1] & 0xE0) != 0xE0:
        return False
    version = (head[1] >> 3) & 0b11
    layer = (head[1] >> 1) & 0b11
    bitrate_index = head[2] >> 4
    sample_rate_index = (head[2] >> 2) & 0b11
    return (
        version != 0b01  # reserved
        and layer == 0b01  # Layer III
        and bitrate_index != 0b1111  # invalid
        and sample_rate_index != 0b11  # reserved
    )
