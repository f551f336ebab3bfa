"""Images beside text: the inputs multimodal providers embed, and what a stored item says it is.

* ``Image``: one image as bytes (read from a path, given as bytes, a file object or a PIL image) or
  as a remote URL (sent as is to the APIs that fetch URLs themselves), with its media type and the
  path or URL it came from.
* ``Content``: one input of interleaved parts (texts and images) embedded into ONE vector.
* ``as_input``: what the provider API accepts for one input: a ``str`` stays text, an image-like
  value becomes an ``Image``, a list or tuple becomes a ``Content``.
* Reserved metadata keys: an image item's record keeps ``mrl_modality``, ``mrl_source`` and
  ``mrl_media_type`` in its metadata (see ``media_metadata`` and docs/multimodal.md for why
  metadata rather than a new column). ``check_reserved`` validates them at every add.

Pillow is optional: a PIL image is accepted when Pillow is installed (it is encoded as PNG); paths,
bytes and URLs need nothing beyond the standard library.

Example:
    >>> img = Image.from_bytes(PNG_1x1)
    >>> img.media_type, img.source
    ('image/png', None)
    >>> as_input(["a red dot", img]).modality
    'text+image'
    >>> media_metadata(Image.from_url("https://example.com/cat.jpg"))
    {'mrl_modality': 'image', 'mrl_source': 'https://example.com/cat.jpg', 'mrl_media_type': 'image/jpeg'}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import mimetypes
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union
from urllib.parse import unquote, urlsplit

from ._imageinfo import MEDIA_TYPES, pixel_size, png_text, sniff_media_type
from .errors import InvalidImageError, InvalidInputError, InvalidMetadataError

MODALITY_KEY = "mrl_modality"
SOURCE_KEY = "mrl_source"
MEDIA_TYPE_KEY = "mrl_media_type"
RESERVED_PREFIX = "mrl_"
RESERVED_KEYS = (MODALITY_KEY, SOURCE_KEY, MEDIA_TYPE_KEY)
MODALITIES = ("text", "image", "text+image")
# Largest image read from disk or accepted as bytes: above every API's own limit (Voyage: 20 MB).
MAX_IMAGE_BYTES = 32 << 20
MAX_SOURCE_CHARS = 4096
_MEDIA_TYPE = re.compile(r"image/[a-z0-9][a-z0-9.+-]*")
# A 1x1 red PNG: the smallest image the doctests and tests can hand around.
PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")


@dataclass(frozen=True)
class Image:
    """One image input. Build it with ``Image.load`` (any image-like value) or the ``from_*`` methods.

    Attributes:
        data: the encoded image (PNG, JPEG, GIF or WebP bytes), or None for a URL image.
        url: the http(s) URL of a remote image (not downloaded here), or None.
        media_type: ``image/png`` ... (from the bytes, or guessed from a URL's extension; None
            when a URL does not tell).
        source: the path or URL it came from, kept in the stored item's metadata (None for bytes).
    """

    data: bytes | None = field(default=None, repr=False)
    url: str | None = None
    media_type: str | None = None
    source: str | None = field(default=None, compare=False)

    @classmethod
    def load(cls, value: Any, *, where: str = "image") -> "Image":
        """An ``Image`` from a path (str or PathLike; ``file://`` too), an http(s) URL, a ``data:``
        URL, bytes, a binary file object (``BytesIO``), a PIL image, or an ``Image``.

        Raises:
            InvalidImageError: unreadable, empty, too large, or not a PNG/JPEG/GIF/WebP image.
        """
        if isinstance(value, Image):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls.from_bytes(bytes(value), where=where)
        if isinstance(value, (str, os.PathLike)):
            text = os.fspath(value)
            if isinstance(text, bytes):
                text = os.fsdecode(text)
            lowered = text[:8].lower()
            if isinstance(value, str) and lowered.startswith(("http://", "https://")):
                return cls.from_url(text)
            if isinstance(value, str) and lowered.startswith("data:"):
                return cls.from_data_url(text, where=where)
            if isinstance(value, str) and lowered.startswith("file://"):
                text = unquote(urlsplit(text).path)
            return cls.from_path(text, where=where)
        if _is_pil_image(value):
            return cls.from_pil(value, where=where)
        if callable(getattr(value, "read", None)):
            return cls.from_bytes(_read_stream(value, where), where=where)
        raise InvalidImageError(
            f"{where}: cannot use a {type(value).__name__} as an image; give a path, an http(s) URL, bytes, "
            "a binary file object or a PIL image")

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str | None = None, where: str = "image") -> "Image":
        if not data:
            raise InvalidImageError(f"{where}: the image is empty (0 bytes)")
        if len(data) > MAX_IMAGE_BYTES:
            raise InvalidImageError(f"{where}: the image is {len(data):,} bytes; the limit is {MAX_IMAGE_BYTES:,}")
        kind = sniff_media_type(data)
        if kind is None:
            raise InvalidImageError(
                f"{where}: not a PNG, JPEG, GIF or WebP image (it starts with {data[:8]!r}); convert it to PNG")
        return cls(data=bytes(data), media_type=kind, source=source)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, where: str = "image") -> "Image":
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > MAX_IMAGE_BYTES:
                raise InvalidImageError(f"{where}: {path} is {size:,} bytes; the limit is {MAX_IMAGE_BYTES:,}")
            data = path.read_bytes()
        except InvalidImageError:
            raise
        except OSError as exc:
            raise InvalidImageError(f"{where}: cannot read image {path}: {exc.strerror or exc}") from None
        return cls.from_bytes(data, source=os.fspath(path), where=f"{where} ({path})")

    @classmethod
    def from_url(cls, url: str) -> "Image":
        """A remote image, sent as its URL (never downloaded here); the type is guessed from the name."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise InvalidImageError(f"image URL {url!r} is not an http(s) URL")
        guessed = mimetypes.guess_type(parts.path)[0]
        return cls(url=url, media_type=guessed if guessed in MEDIA_TYPES else None, source=url)

    @classmethod
    def from_data_url(cls, url: str, *, where: str = "image") -> "Image":
        header, sep, payload = url.partition(",")
        if not sep or not header.lower().endswith(";base64"):
            raise InvalidImageError(f"{where}: a data URL must be data:<type>;base64,<data>")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidImageError(f"{where}: the data URL's payload is not valid base64") from None
        return cls.from_bytes(data, where=where)

    @classmethod
    def from_pil(cls, image: Any, *, where: str = "image") -> "Image":
        """A PIL image, encoded as PNG (lossless); its file name, if it was opened from one, is the source."""
        buffer = io.BytesIO()
        try:
            picture = image if image.mode in ("RGB", "RGBA", "L", "LA", "P", "1") else image.convert("RGBA")
            picture.save(buffer, format="PNG")
        except (OSError, ValueError) as exc:
            raise InvalidImageError(f"{where}: cannot encode the PIL image as PNG: {exc}") from None
        filename = getattr(image, "filename", None)
        return cls.from_bytes(buffer.getvalue(), source=filename or None, where=where)

    # -- what the providers need --

    @property
    def is_url(self) -> bool:
        return self.data is None

    def base64(self) -> str:
        """The bytes in base64 (no ``data:`` prefix)."""
        return base64.b64encode(self._bytes()).decode("ascii")

    def data_url(self) -> str:
        """``data:<type>;base64,<data>``: the form Voyage takes."""
        return f"data:{self.media_type};base64,{self.base64()}"

    def pixels(self) -> int | None:
        """Width x height from the header (None for a URL or an unusual header)."""
        size = pixel_size(self.data) if self.data is not None else None
        return None if size is None else size[0] * size[1]

    def text_chunks(self) -> dict[str, str]:
        """A PNG's text chunks (title, description...); ``{}`` otherwise."""
        return png_text(self.data) if self.data is not None else {}

    def digest(self) -> str:
        """A stable identity: sha256 of the bytes, or of the URL."""
        raw = self.data if self.data is not None else ("url:" + (self.url or "")).encode("utf-8")
        return hashlib.sha256(raw).hexdigest()

    def _bytes(self) -> bytes:
        if self.data is None:
            raise InvalidImageError(f"the image {self.url} is a URL; this provider needs its bytes")
        return self.data


@dataclass(frozen=True)
class Content:
    """One input made of interleaved parts (texts and images), embedded into one vector.

    Example:
        >>> Content(("a chart of rainfall", Image.from_bytes(PNG_1x1))).modality
        'text+image'
    """

    parts: tuple[Union[str, Image], ...]

    @property
    def images(self) -> list[Image]:
        return [p for p in self.parts if isinstance(p, Image)]

    @property
    def texts(self) -> list[str]:
        return [p for p in self.parts if isinstance(p, str)]

    @property
    def modality(self) -> str:
        return modality_of(self)

    def cache_key(self) -> str:
        """A string naming this content exactly (texts and image digests), for the embedding cache.

        Starts with U+0000, which no plain text key of the cache can be confused with in practice.
        """
        pieces = [f"t{len(p)}:{p}" if isinstance(p, str) else f"i:{p.media_type}:{p.digest()}" for p in self.parts]
        return "\x00mrl-content\x00" + "\x00".join(pieces)


Input = Union[str, Image, Content]


def as_input(value: Any, *, where: str = "input") -> str | Image | Content:
    """One provider input: a ``str`` is text; a list or tuple is interleaved parts (its ``str``
    items are text, anything else an image); any other value is loaded as an image.

    A single text part stays a plain ``str`` and a single image part a plain ``Image``, so the
    same input embeds (and caches) the same whatever way it was given.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, Content):
        parts = value.parts
    elif isinstance(value, (list, tuple)):
        parts = tuple(p if isinstance(p, str) else Image.load(p, where=f"{where}[{i}]") for i, p in enumerate(value))
    else:
        return Image.load(value, where=where)
    if not parts:
        raise InvalidInputError(f"{where}: an input needs at least one part (a text or an image)")
    return parts[0] if len(parts) == 1 else Content(tuple(parts))


def modality_of(item: Any) -> str:
    """"text", "image" or "text+image" (interleaved) for one input."""
    if isinstance(item, str):
        return "text"
    if isinstance(item, Image):
        return "image"
    has_text = any(isinstance(p, str) for p in item.parts)
    return "text+image" if has_text else "image"


def images_of(item: Any) -> list[Image]:
    if isinstance(item, Image):
        return [item]
    return item.images if isinstance(item, Content) else []


def cache_key(item: Any) -> str:
    """The string an embedding cache keys one input by: a text is itself; an image or interleaved
    input a name built from its texts and image digests (starting with U+0000, which no plain text
    key of the cache is confused with in practice)."""
    if isinstance(item, str):
        return item
    return (item if isinstance(item, Content) else Content((item,))).cache_key()


def media_metadata(item: Any) -> dict[str, Any]:
    """The reserved keys a stored item carries for an input: ``{}`` for text; for an image its
    modality, source (path or URL, when known) and media type (lists when it holds several)."""
    images = images_of(item)
    if not images:
        return {}
    out: dict[str, Any] = {MODALITY_KEY: modality_of(item)}
    sources = [img.source for img in images]
    types = [img.media_type for img in images]
    if len(images) == 1:
        if sources[0]:
            out[SOURCE_KEY] = sources[0]
        if types[0]:
            out[MEDIA_TYPE_KEY] = types[0]
    else:
        if all(sources):
            out[SOURCE_KEY] = sources
        if all(types):
            out[MEDIA_TYPE_KEY] = types
    return out


def check_reserved(md: Mapping[str, Any], where: str = "metadata") -> None:
    """Validate the reserved ``mrl_*`` keys of one item's metadata (others are the caller's).

    Raises:
        InvalidMetadataError: an unknown ``mrl_*`` key, a modality outside ``MODALITIES``, a
            source or media type of the wrong shape, or media keys on a text item.
    """
    for key in md:
        if isinstance(key, str) and key.startswith(RESERVED_PREFIX) and key not in RESERVED_KEYS:
            raise InvalidMetadataError(
                f"{where}: key {key!r} uses the reserved prefix {RESERVED_PREFIX!r}; the reserved keys are "
                f"{', '.join(RESERVED_KEYS)} (rename your key)")
    modality = md.get(MODALITY_KEY, "text")
    if modality not in MODALITIES:
        raise InvalidMetadataError(f"{where}[{MODALITY_KEY!r}] must be one of {MODALITIES}, got {modality!r}")
    for key, check in ((SOURCE_KEY, _valid_source), (MEDIA_TYPE_KEY, _valid_media_type)):
        if key not in md:
            continue
        if modality == "text":
            raise InvalidMetadataError(
                f"{where}[{key!r}] describes an image; set {MODALITY_KEY!r} to 'image' or 'text+image' as well")
        value = md[key]
        values = value if isinstance(value, list) and value else [value]
        if not all(check(v) for v in values):
            raise InvalidMetadataError(f"{where}[{key!r}] is not a valid {key[4:].replace('_', ' ')}: {value!r:.120}")


def _valid_source(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_SOURCE_CHARS


def _valid_media_type(value: Any) -> bool:
    return isinstance(value, str) and _MEDIA_TYPE.fullmatch(value) is not None


def _is_pil_image(value: Any) -> bool:
    # Duck-typed on the class path: Pillow stays an optional import.
    return any(c.__module__.startswith("PIL.") and c.__name__ == "Image" for c in type(value).__mro__)


def _read_stream(stream: Any, where: str) -> bytes:
    try:
        if callable(getattr(stream, "seek", None)) and getattr(stream, "seekable", lambda: False)():
            stream.seek(0)
        data = stream.read(MAX_IMAGE_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise InvalidImageError(f"{where}: cannot read the image stream: {exc}") from None
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidImageError(f"{where}: the stream gave {type(data).__name__}, not bytes (open it in binary mode)")
    return bytes(data)


__all__ = [
    "MAX_IMAGE_BYTES", "MEDIA_TYPES", "MEDIA_TYPE_KEY", "MODALITIES", "MODALITY_KEY", "PNG_1x1", "RESERVED_KEYS",
    "RESERVED_PREFIX", "SOURCE_KEY", "Content", "Image", "Input", "as_input", "cache_key", "check_reserved", "images_of",
    "media_metadata", "modality_of",
]
