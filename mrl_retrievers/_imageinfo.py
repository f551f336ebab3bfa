"""What an image's first bytes say: its media type, its size in pixels, and a PNG's text chunks.

Pure stdlib (``struct`` and ``zlib``), so identifying an image needs neither Pillow nor a decoder:
providers check types before any request, batch by the pixels an API charges for, and the fake
provider reads a PNG's caption. Only the four formats every multimodal API here takes are known.

Example:
    >>> sniff_media_type(b"\\x89PNG\\r\\n\\x1a\\n....")
    'image/png'
    >>> sniff_media_type(b"%PDF-1.7") is None
    True
"""

from __future__ import annotations

import struct
import zlib

PNG, JPEG, GIF, WEBP = "image/png", "image/jpeg", "image/gif", "image/webp"
MEDIA_TYPES: tuple[str, ...] = (PNG, JPEG, GIF, WEBP)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Most text one PNG text chunk may inflate to (a zlib bomb must not eat the memory).
_MAX_TEXT = 1 << 16


def sniff_media_type(data: bytes) -> str | None:
    """``image/png``, ``image/jpeg``, ``image/gif`` or ``image/webp`` from the magic bytes, else None."""
    if data.startswith(_PNG_SIGNATURE):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return None


def pixel_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` read from the header, or None when the header is cut short or odd."""
    try:
        kind = sniff_media_type(data)
        if kind == PNG and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if kind == GIF:
            return struct.unpack("<HH", data[6:10])
        if kind == WEBP:
            return _webp_size(data)
        if kind == JPEG:
            return _jpeg_size(data)
    except (struct.error, IndexError):
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L":
        b0, b1, b2, b3 = data[21:25]
        return 1 + (((b1 & 0x3F) << 8) | b0), 1 + (((b3 & 0x0F) << 10) | (b2 << 2) | ((b1 & 0xC0) >> 6))
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xDA)):  # no length field
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


def png_text(data: bytes) -> dict[str, str]:
    """The text chunks of a PNG (``tEXt``, ``zTXt``, ``iTXt``) as ``{keyword: text}``; ``{}`` for
    other formats. Damaged chunks are skipped: this is a description, never a validation."""
    if not data.startswith(_PNG_SIGNATURE):
        return {}
    out: dict[str, str] = {}
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IEND" or len(body) < length:
            break
        if kind in (b"tEXt", b"zTXt", b"iTXt") and b"\x00" in body:
            parsed = _text_chunk(kind, body)
            if parsed is not None:
                out.setdefault(*parsed)
    return out


def _text_chunk(kind: bytes, body: bytes) -> tuple[str, str] | None:
    keyword, _, rest = body.partition(b"\x00")
    try:
        if kind == b"tEXt":
            text = rest.decode("latin-1")
        elif kind == b"zTXt":
            text = _inflate(rest[1:]).decode("latin-1")
        else:  # iTXt: compression flag, method, language tag\0, translated keyword\0, UTF-8 text
            compressed = rest[:1] == b"\x01"
            _lang, _, rest = rest[2:].partition(b"\x00")
            _translated, _, raw = rest.partition(b"\x00")
            text = (_inflate(raw) if compressed else raw).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, ValueError):
        return None
    return keyword.decode("latin-1"), text


def _inflate(raw: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(raw, _MAX_TEXT)
    if inflater.unconsumed_tail:
        raise ValueError("a PNG text chunk inflates beyond the limit")
    return out


__all__ = ["GIF", "JPEG", "MEDIA_TYPES", "PNG", "WEBP", "pixel_size", "png_text", "sniff_media_type"]
