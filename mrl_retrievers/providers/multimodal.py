"""Images through the provider interface: input checks, capabilities and costs shared by adapters.

A provider says what its model takes with five attributes (``Provider`` defaults: text only):
``modalities`` ("text", "image"), ``interleaved`` (texts and images in one input), ``image_types``
(media types), ``image_urls`` (the API fetches http(s) URLs itself) and ``max_images_per_input``.
Adapters of multimodal models copy them from the known-models table (``apply_capabilities``).

Inputs are checked here before any request, so a text-only model, a WebP sent where only PNG and
JPEG are taken, or a URL where the API wants bytes fail with one typed error
(``UnsupportedModalityError`` / ``InvalidImageError``) that names the model and the fix. The
batches then run through the same machinery as texts (batching, concurrency, retries, response
checks, truncation, renormalization): ``_embed_batch(items, kind)`` of a multimodal adapter gets
plain strings, ``Image`` objects and ``Content`` objects.

Example:
    >>> from mrl_retrievers.providers.fake import FakeProvider
    >>> from mrl_retrievers.media import PNG_1x1
    >>> [modality_of(i) for i in check_inputs(FakeProvider(dim=8), ["a cat", PNG_1x1, ["a red dot", PNG_1x1]])]
    ['text', 'image', 'text+image']
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InvalidImageError, InvalidInputError, UnsupportedModalityError
from ..media import Content, Image, as_input, images_of, modality_of
from .models import MODELS, ModelInfo

Item = Any  # str | Image | Content


def apply_capabilities(provider: Any, info: ModelInfo | None) -> None:
    """Copy what a known model takes onto the provider instance (unknown models: text only)."""
    if info is None or "image" not in info.modalities:
        return
    provider.modalities = tuple(info.modalities)
    provider.interleaved = info.interleaved
    provider.image_types = tuple(info.image_types)
    provider.image_urls = info.image_urls
    provider.max_images_per_input = info.max_images_per_input


def multimodal_models() -> str:
    """The known models that take images, as ``provider/model`` names for error messages."""
    return ", ".join(f"{i.provider}/{i.name}" for i in MODELS if "image" in i.modalities) + ", or fake"


def check_inputs(provider: Any, inputs: Any, *, images: bool = False) -> list[Item]:
    """Each input as a ``str``, ``Image`` or ``Content``, checked against what ``provider`` takes.

    Args:
        images: every input is an image (``embed_images``): a ``str`` is then a path or a URL,
            never text.

    Raises:
        InvalidInputError: not a list, or an empty text where the API refuses those.
        InvalidImageError: an image that cannot be read, or in a form the model does not take.
        UnsupportedModalityError: an image, or interleaved parts, for a model that cannot take them.
    """
    what = "images" if images else "inputs"
    if isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__iter__") or _is_single_image(inputs):
        raise InvalidInputError(f"{what} must be a list (one item per vector), got one {type(inputs).__name__}")
    items = [Image.load(v, where=f"{what}[{i}]") if images else as_input(v, where=f"{what}[{i}]")
             for i, v in enumerate(inputs)]
    for i, item in enumerate(items):
        check_item(provider, item, f"{what}[{i}]")
    return items


def check_item(provider: Any, item: Item, where: str) -> None:
    """One input against the provider's capabilities (see the module docstring)."""
    label = f"{provider.name}/{provider.model}"
    texts = [item] if isinstance(item, str) else item.texts if isinstance(item, Content) else []
    if getattr(provider, "reject_empty", False) and any(not t.strip() for t in texts):
        raise InvalidInputError(f"{where}: a text part is empty or whitespace-only; {label} refuses those")
    pictures = images_of(item)
    if pictures and "image" not in provider.modalities:
        raise UnsupportedModalityError(
            f"{where}: {label} embeds text only; images need a multimodal model: {multimodal_models()}",
            provider=provider.name, model=provider.model)
    if isinstance(item, Content) and not provider.interleaved:
        raise UnsupportedModalityError(
            f"{where}: {label} embeds one text or one image per input, not interleaved parts; give each part "
            f"as its own input, or use a model that interleaves ({_interleaving_models()})",
            provider=provider.name, model=provider.model)
    if not pictures:
        return
    limit = provider.max_images_per_input
    if limit is not None and len(pictures) > limit:
        raise InvalidInputError(f"{where}: {len(pictures)} images in one input; {label} takes at most {limit}")
    for image in pictures:
        _check_image(provider, image, where, label)
    if len({img.is_url for img in pictures}) > 1 and getattr(provider, "one_image_transport", False):
        raise InvalidImageError(
            f"{where}: mixes image URLs and image bytes in one input; {label} takes one or the other per "
            "request: load the URL images (download them) or give URLs only")


def _check_image(provider: Any, image: Image, where: str, label: str) -> None:
    if image.is_url and not provider.image_urls:
        raise InvalidImageError(
            f"{where}: {label} takes image bytes, not URLs ({image.url}); download the image and pass its "
            "path or bytes")
    if image.media_type is not None and image.media_type not in provider.image_types:
        raise InvalidImageError(
            f"{where}: {label} takes {', '.join(provider.image_types)} images, not {image.media_type}; "
            "convert it (e.g. to PNG)")


def _interleaving_models() -> str:
    return ", ".join(f"{i.provider}/{i.name}" for i in MODELS if i.interleaved)


def _is_single_image(value: Any) -> bool:
    return isinstance(value, (Image, Content, bytearray, memoryview)) or callable(getattr(value, "read", None)) or any(
        c.__module__.startswith("PIL.") for c in type(value).__mro__)


# --- costs, for batching by tokens ------------------------------------------------------------


def item_tokens(item: Item, text_tokens: Callable[[str], int], image_tokens: Callable[[Image], int]) -> int:
    """Estimated tokens of one input: its texts by ``text_tokens``, its images by ``image_tokens``."""
    if isinstance(item, str):
        return text_tokens(item)
    parts = item.parts if isinstance(item, Content) else (item,)
    return sum(text_tokens(p) if isinstance(p, str) else image_tokens(p) for p in parts)


def pixel_tokens(image: Image, *, per_token: int, min_pixels: int, max_pixels: int) -> int:
    """Tokens an API charges an image by its pixels, after it resizes to [min, max] pixels; the
    maximum when the size is unknown (a URL), so a batch never goes over a cap by surprise."""
    pixels = image.pixels()
    pixels = max_pixels if pixels is None else min(max(pixels, min_pixels), max_pixels)
    return math.ceil(pixels / per_token)


def split_where(items: Sequence[Item], batches: list[np.ndarray], key: Callable[[Item], Any]) -> list[np.ndarray]:
    """Split each batch where ``key`` of an item changes (items whose key is None go anywhere).

    Voyage takes image URLs or image bytes in one request, never both: its batches are cut where
    the transport changes.
    """
    out: list[np.ndarray] = []
    for positions in batches:
        start, current = 0, None
        for j, pos in enumerate(positions):
            value = key(items[pos])
            if value is None:
                continue
            if current is not None and value != current:
                out.append(positions[start:j])
                start = j
            current = value
        out.append(positions[start:])
    return out


def image_transport(item: Item) -> str | None:
    """"url" or "bytes" for an input with images, None for text."""
    pictures = images_of(item)
    if not pictures:
        return None
    return "url" if pictures[0].is_url else "bytes"


__all__ = [
    "apply_capabilities", "check_inputs", "check_item", "image_transport", "item_tokens", "modality_of",
    "multimodal_models", "pixel_tokens", "split_where",
]
