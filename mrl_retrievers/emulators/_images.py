"""Image handling the emulators share: decode what a client sent, as the real APIs would.

The emulators decode every image with Pillow (a test dependency), independently of the package's
own header sniffing, so a client that declares one type and sends another, or sends bytes that are
not an image at all, is refused the way the APIs refuse it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from dataclasses import dataclass

PIL_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)
# A host the emulators treat as unreachable: an image URL there fails as an unreachable one does.
UNREACHABLE_HOST = "unreachable.invalid"


class BadImage(ValueError):
    """What the client sent is not a usable image (the message is the API's)."""


@dataclass(frozen=True)
class Decoded:
    media_type: str
    width: int
    height: int
    digest: str  # sha256 of the bytes: what the emulators' vectors are drawn from
    size: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def identity(self) -> str:
        return f"image:{self.digest}"


def decode(data: bytes) -> Decoded:
    """Open ``data`` with Pillow; BadImage when it is not a PNG, JPEG, GIF or WebP image."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 - a test-only dependency

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
            fmt, (width, height) = img.format, img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"cannot identify the image ({exc})") from None
    if fmt not in PIL_FORMATS:
        raise BadImage(f"unsupported image format {fmt}")
    return Decoded(PIL_FORMATS[fmt], width, height, hashlib.sha256(data).hexdigest(), len(data))


def b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("the image is not valid base64") from None


def decode_data_url(url: str) -> tuple[str, Decoded]:
    """(declared type, decoded image) of ``data:<type>;base64,<data>``."""
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise BadImage("the image must be a data URL: data:[<mediatype>];base64,<data>")
    return match.group("type"), decode(b64decode(match.group("data")))


def url_identity(url: str) -> str:
    """The identity an emulator gives a fetched URL (it never fetches: the URL stands for the image)."""
    if not url.startswith(("http://", "https://")):
        raise BadImage(f"the image URL {url!r} is not an http(s) URL")
    if UNREACHABLE_HOST in url:
        raise BadImage(f"failed to fetch the image at {url}")
    return "url:" + url


__all__ = ["BadImage", "Decoded", "PIL_FORMATS", "UNREACHABLE_HOST", "b64decode", "decode", "decode_data_url",
           "url_identity"]
