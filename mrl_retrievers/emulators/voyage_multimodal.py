"""The Voyage emulator's ``POST /v1/multimodalembeddings`` (voyage-multimodal-3.5, voyage-multimodal-3).

Speaks, per Voyage's API reference:

* body ``{"inputs": [{"content": [segment, ...]}, ...], "model", "input_type", "truncation",
  "output_dtype", "output_dimension", "encoding_format"}`` (the SDK sends unset options as null);
* a segment is ``{"type": "text", "text"}``, ``{"type": "image_base64", "image_base64":
  "data:<mediatype>;base64,<data>"}`` (PNG, JPEG, WebP, GIF) or ``{"type": "image_url",
  "image_url"}``, nothing else in it; one request uses image_base64 or image_url, not both;
* at most 1000 inputs; an image at most 20 MB and 16M pixels, charged ceil(pixels / 560) tokens
  after resizing into 50k..2M pixels; 32k tokens an input (longer texts are cut when truncation
  is on, else refused) and 320k a request;
* answers like ``/v1/embeddings`` with ``usage: {text_tokens, image_pixels, video_pixels,
  total_tokens}`` (the SDK's MultimodalEmbeddingsObject reads all four). An input's vector is drawn
  from its segments in order (texts, image digests, URLs), so interleaving order matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._images import BadImage, decode_data_url, url_identity

MULTIMODAL_PATH = "/v1/multimodalembeddings"
MAX_INPUTS = 1000
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 16_000_000
PIXELS_PER_TOKEN, MIN_PIXELS, MAX_PIXELS = 560, 50_000, 2_000_000
INPUT_TOKENS, REQUEST_TOKENS = 32_000, 320_000
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
SEGMENT_FIELDS = {"text": "text", "image_base64": "image_base64", "image_url": "image_url"}


class Refused(Exception):
    """A 400 with this message."""


@dataclass(frozen=True)
class Segment:
    kind: str  # "text" | "image_base64" | "image_url"
    identity: str  # the text itself, or the image's identity
    tokens: int
    pixels: int = 0


def parse_inputs(body: dict[str, Any], estimate_tokens: Any) -> list[list[Segment]]:
    """The inputs as segments, validated as the API does; Refused(message) otherwise."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise Refused("'inputs' must be a non-empty list.")
    if len(inputs) > MAX_INPUTS:
        raise Refused(f"The batch size limit is {MAX_INPUTS}. Your batch size is {len(inputs)}.")
    parsed = [_parse_input(i, item, estimate_tokens, body.get("truncation", True)) for i, item in enumerate(inputs)]
    kinds = {s.kind for segments in parsed for s in segments if s.kind != "text"}
    if len(kinds) > 1:
        raise Refused("Consistency is required within a request: use either image_base64 or image_url for "
                      "images, not both.")
    total = sum(s.tokens for segments in parsed for s in segments)
    if total > REQUEST_TOKENS:
        raise Refused(f"The max allowed tokens per submitted batch is {REQUEST_TOKENS}. Your batch has {total} "
                      "tokens after truncation. Please lower the number of tokens in the batch.")
    return parsed


def _parse_input(i: int, item: Any, estimate_tokens: Any, truncation: Any) -> list[Segment]:
    if not isinstance(item, dict) or set(item) != {"content"}:
        raise Refused(f"Input at index {i} must be a dictionary with the single key 'content'.")
    content = item["content"]
    if not isinstance(content, list) or not content:
        raise Refused(f"Input at index {i}: 'content' must be a non-empty list.")
    segments = [_segment(i, j, seg, estimate_tokens) for j, seg in enumerate(content)]
    tokens = sum(s.tokens for s in segments)
    if tokens > INPUT_TOKENS:
        if truncation is False:
            raise Refused(f"Input {i} exceeds the context length of {INPUT_TOKENS} tokens and truncation is "
                          "disabled.")
        segments = _truncate(segments)
    return segments


def _segment(i: int, j: int, seg: Any, estimate_tokens: Any) -> Segment:
    kind = seg.get("type") if isinstance(seg, dict) else None
    if kind not in SEGMENT_FIELDS:
        raise Refused(f"Input {i}, content {j}: 'type' must be one of text, image_url, image_base64; got {kind!r}.")
    if set(seg) != {"type", SEGMENT_FIELDS[kind]} or not isinstance(seg[kind], str):
        raise Refused(f"Input {i}, content {j}: a {kind} piece has exactly the keys 'type' and '{kind}'.")
    value = seg[kind]
    try:
        if kind == "text":
            return Segment("text", "text:" + value, estimate_tokens(value))
        if kind == "image_url":
            return Segment(kind, url_identity(value), MAX_PIXELS // PIXELS_PER_TOKEN, MAX_PIXELS)
        declared, image = decode_data_url(value)
    except BadImage as exc:
        raise Refused(f"Input {i}, content {j}: {exc}.") from None
    if declared not in IMAGE_TYPES:
        raise Refused(f"Input {i}, content {j}: unsupported image media type {declared}; supported: "
                      f"{', '.join(IMAGE_TYPES)}.")
    if declared != image.media_type:
        raise Refused(f"Input {i}, content {j}: the data URL says {declared} but the image is {image.media_type}.")
    if image.size > MAX_IMAGE_BYTES or image.pixels > MAX_IMAGE_PIXELS:
        raise Refused(f"Input {i}, content {j}: images are limited to 20 MB and 16 million pixels.")
    charged = min(max(image.pixels, MIN_PIXELS), MAX_PIXELS)
    return Segment(kind, image.identity, math.ceil(charged / PIXELS_PER_TOKEN), image.pixels)


def _truncate(segments: list[Segment]) -> list[Segment]:
    """Drop text from the end until the input fits (images are never cut)."""
    out, used = [], 0
    for s in segments:
        if s.kind == "text" and used + s.tokens > INPUT_TOKENS:
            keep = max(0, INPUT_TOKENS - used)
            s = Segment("text", s.identity[: len("text:") + keep * 4], keep)
        out.append(s)
        used += s.tokens
    return out


def identity(segments: list[Segment]) -> str:
    """What an input's vector is drawn from: its segments, in order."""
    return "\x1f".join(s.identity for s in segments)


def usage(parsed: list[list[Segment]]) -> dict[str, int]:
    text = sum(s.tokens for segments in parsed for s in segments if s.kind == "text")
    pixels = sum(s.pixels for segments in parsed for s in segments)
    images = sum(s.tokens for segments in parsed for s in segments if s.kind != "text")
    return {"text_tokens": text, "image_pixels": pixels, "video_pixels": 0, "total_tokens": text + images}


__all__ = ["IMAGE_TYPES", "MULTIMODAL_PATH", "Refused", "Segment", "identity", "parse_inputs", "usage"]
