"""Image nodes in ``MRLVectorStore``: what their records say they are, and nodes for image items.

An ``ImageNode`` keeps its ``image_path`` / ``image_url`` / ``image_mimetype`` in the serialized
node, as every LlamaIndex store does; its record also gets the package's reserved metadata keys
(``mrl_modality``, ``mrl_source``, ``mrl_media_type``) so the same store answers LangChain and
``MRLIndex`` callers, and ``{"mrl_modality": "image"}`` filters images. The node LlamaIndex gets
back is rebuilt from the serialized node, so its own metadata is exactly what was added.

An image item written without LlamaIndex (``MRLIndex.add_images``, LangChain's ``add_images``)
comes back as an ``ImageNode`` built from those keys.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from collections.abc import Mapping
from typing import Any

from llama_index.core.schema import BaseNode, ImageNode, TextNode

from mrl_retrievers.media import MEDIA_TYPE_KEY, MODALITY_KEY, SOURCE_KEY, Image
from mrl_retrievers.errors import InvalidImageError

_MEDIA_TYPE = re.compile(r"image/[a-z0-9][a-z0-9.+-]*")


def image_keys(node: BaseNode) -> dict[str, Any]:
    """The reserved keys of an ``ImageNode``'s record (``{}`` for any other node)."""
    if not isinstance(node, ImageNode) or not (node.image_path or node.image_url or node.image):
        return {}
    keys: dict[str, Any] = {MODALITY_KEY: "image"}
    source = node.image_path or node.image_url
    if source:
        keys[SOURCE_KEY] = str(source)
    media_type = _media_type(node)
    if media_type:
        keys[MEDIA_TYPE_KEY] = media_type
    return keys


def _media_type(node: ImageNode) -> str | None:
    if node.image_mimetype and _MEDIA_TYPE.fullmatch(node.image_mimetype):
        return node.image_mimetype
    if node.image:  # inline base64: the bytes say
        try:
            return Image.from_bytes(base64.b64decode(node.image)).media_type
        except (binascii.Error, ValueError, InvalidImageError):
            return None
    guessed = mimetypes.guess_type(str(node.image_path or node.image_url))[0]
    return guessed if guessed and _MEDIA_TYPE.fullmatch(guessed) else None


def plain_node(node_id: str, text: str | None, metadata: Mapping[str, Any]) -> BaseNode:
    """A node for an item written without LlamaIndex: an ``ImageNode`` for an image item."""
    if metadata.get(MODALITY_KEY) != "image":
        return TextNode(id_=node_id, text=text or "", metadata=metadata)  # validation copies the mapping
    source = metadata.get(SOURCE_KEY)
    source = source if isinstance(source, str) else None
    remote = source is not None and source.startswith(("http://", "https://"))
    media_type = metadata.get(MEDIA_TYPE_KEY)
    return ImageNode(id_=node_id, text=text or "", metadata=dict(metadata),
                     image_url=source if remote else None, image_path=None if remote else source,
                     image_mimetype=media_type if isinstance(media_type, str) else None)


__all__ = ["image_keys", "plain_node"]
