"""Small images made on the fly for the multimodal tests (Pillow, a test dependency)."""

from __future__ import annotations

import io


def image_bytes(fmt: str = "PNG", *, color: str = "red", size: tuple[int, int] = (8, 6), caption: str | None = None
                ) -> bytes:
    """An image of ``size`` filled with ``color``; a PNG can carry ``caption`` as a Description chunk."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    buffer = io.BytesIO()
    options = {}
    if caption is not None:
        info = PngInfo()
        info.add_text("Description", caption)
        options["pnginfo"] = info
    if fmt == "WEBP":
        options["lossless"] = True
    Image.new("RGB", size, color).save(buffer, fmt, **options)
    return buffer.getvalue()


def png(color: str = "red", **kw) -> bytes:
    return image_bytes("PNG", color=color, **kw)


def jpeg(color: str = "red", **kw) -> bytes:
    return image_bytes("JPEG", color=color, **kw)


def webp(color: str = "red", **kw) -> bytes:
    return image_bytes("WEBP", color=color, **kw)
