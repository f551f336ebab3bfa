"""Voyage's multimodal endpoint (``POST /v1/multimodalembeddings``): pure request building.

``VoyageProvider`` sends every batch of a multimodal model (voyage-multimodal-3.5, -3) here, texts
included (those models are not served by ``/v1/embeddings``), through the SDK's
``multimodal_embed``. Wire format (Voyage docs, checked by the loopback emulator field by field):

* ``inputs``: one ``{"content": [segment, ...]}`` per input, segments ``{"type": "text", "text"}``,
  ``{"type": "image_base64", "image_base64": "data:<type>;base64,<data>"}`` or
  ``{"type": "image_url", "image_url": "https://..."}``, interleaved in the order given;
* ``input_type`` ("query" / "document"), ``truncation``, ``output_dimension`` (256, 512, 1024,
  2048 on voyage-multimodal-3.5); the SDK adds ``output_dtype: null`` and ``encoding_format:
  "base64"`` and decodes the vectors itself;
* one request carries image URLs or image bytes, never both: ``VoyageProvider`` cuts its batches
  where that changes (``multimodal.split_where``);
* images cost 560 pixels a token after being resized to 50k..2M pixels; 320k tokens a request.

Images go as dicts (not PIL objects) so their bytes are sent as given: the SDK would re-encode a
PIL image as WebP.

Example:
    >>> build_request("voyage-multimodal-3.5", ["a cat"], "query", 512)["inputs"]
    [{'content': [{'type': 'text', 'text': 'a cat'}]}]
"""

from __future__ import annotations

from typing import Any, Sequence

from ..media import Content, Image
from .multimodal import item_tokens, pixel_tokens

PIXELS_PER_TOKEN = 560
MIN_PIXELS, MAX_PIXELS = 50_000, 2_000_000  # the resize bounds the API applies before counting
_INPUT_TYPES = {"query": "query", "document": "document"}


def segment(part: str | Image) -> dict[str, str]:
    """One content segment: a text, an image URL, or image bytes as a base64 data URL."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if part.is_url:
        return {"type": "image_url", "image_url": part.url or ""}
    return {"type": "image_base64", "image_base64": part.data_url()}


def build_request(model: str, items: Sequence[Any], kind: str, request_dim: int | None, *,
                  truncation: bool = True) -> dict[str, Any]:
    """Keyword arguments of ``Client.multimodal_embed`` / ``AsyncClient.multimodal_embed``."""
    inputs = []
    for item in items:
        parts = item.parts if isinstance(item, Content) else (item,)
        inputs.append({"content": [segment(p) for p in parts]})
    return {"inputs": inputs, "model": model, "input_type": _INPUT_TYPES[kind], "truncation": truncation,
            "output_dimension": request_dim}


def estimate_tokens(item: Any, text_tokens: Any) -> int:
    """Tokens Voyage charges one input: its texts by ``text_tokens``, its images by their pixels."""
    return item_tokens(item, text_tokens, lambda image: pixel_tokens(
        image, per_token=PIXELS_PER_TOKEN, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS))


__all__ = ["MAX_PIXELS", "MIN_PIXELS", "PIXELS_PER_TOKEN", "build_request", "estimate_tokens", "segment"]
