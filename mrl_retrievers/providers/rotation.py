"""Orthogonal PCA rotations: make a model that was not trained with MRL truncatable.

Rotating unit vectors by an orthogonal matrix changes no cosine similarity at full width, but if
the new axes are the principal components (largest variance first), a prefix keeps as much of the
spread between texts as any prefix can. The rotation is fitted once on a sample, saved as ``.npy``
(``allow_pickle=False`` both ways) and named in ``EmbeddingSpec.rotation`` by its checksum, so
later texts and stores use exactly the same one.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    >>> r = fit_rotation(x)
    >>> bool(np.allclose(r.T @ r, np.eye(8), atol=1e-5))
    True
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError

# Largest |R^T R - I| entry accepted for a loaded matrix (float32 round-off is ~1e-6).
_ORTHO_TOL = 1e-3


def fit_rotation(vectors: np.ndarray) -> np.ndarray:
    """The orthogonal matrix whose columns are the principal axes of ``vectors``, by variance.

    Args:
        vectors: ``(n, d)`` sample embeddings (n >= 2; fewer than d samples is fine: the axes beyond
            the sample's rank come last and are still orthogonal).

    Returns:
        ``(d, d)`` float32 ``R``; apply as ``vectors @ R``. Signs are fixed (largest entry of each
        axis positive) so the same sample always gives the same matrix.
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or not np.isfinite(x).all():
        raise ConfigError(f"fit_rotation needs a finite (n >= 2, d) sample, got shape {x.shape}")
    centered = x - x.mean(axis=0, keepdims=True)
    cov = centered.T @ centered / (x.shape[0] - 1)
    values, axes = np.linalg.eigh(cov)  # ascending, orthonormal columns
    axes = axes[:, np.argsort(values)[::-1]]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    axes *= np.where(signs == 0, 1.0, signs)
    return np.ascontiguousarray(axes, dtype=np.float32)


def rotation_checksum(matrix: np.ndarray) -> str:
    """``"sha256:<hex>"`` of the little-endian float32 bytes: the rotation's id in a spec."""
    data = np.ascontiguousarray(matrix, dtype="<f4")
    shape = f"{data.shape[0]}x{data.shape[1]}".encode()
    return "sha256:" + hashlib.sha256(shape + b"\x00" + data.tobytes()).hexdigest()


def check_rotation(matrix: np.ndarray, *, dim: int | None = None, source: str = "rotation") -> np.ndarray:
    """Validate a rotation (square, finite, orthogonal, ``dim`` wide); return it as float32."""
    arr = np.asarray(matrix)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or not np.issubdtype(arr.dtype, np.floating):
        raise ConfigError(f"{source} must be a square float matrix, got shape {arr.shape} dtype {arr.dtype}")
    if dim is not None and arr.shape[0] != dim:
        raise ConfigError(f"{source} is {arr.shape[0]} wide but the model returns {dim}-wide vectors; "
                          "fit a rotation for this model with fit_rotation")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ConfigError(f"{source} contains NaN or infinity")
    err = float(np.abs(arr.T.astype(np.float64) @ arr - np.eye(arr.shape[0])).max())
    if err > _ORTHO_TOL:
        raise ConfigError(f"{source} is not orthogonal (max |R^T R - I| = {err:.2e}); refit it")
    return arr


def save_rotation(matrix: np.ndarray, path: str | os.PathLike[str]) -> str:
    """Write ``matrix`` as ``.npy`` atomically (temp file, fsync, rename); return its checksum."""
    arr = check_rotation(matrix)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr.astype("<f4"), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:  # make the rename itself durable
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return rotation_checksum(arr)


def load_rotation(
    path: str | os.PathLike[str], *, dim: int | None = None, checksum: str | None = None
) -> np.ndarray:
    """Read a rotation saved by ``save_rotation``; check shape, orthogonality and ``checksum``.

    Raises:
        ConfigError: missing, unreadable, not a rotation, or another rotation than ``checksum``.
    """
    source = f"rotation file {path}"
    try:
        arr = np.load(Path(path), allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"{source} does not exist; fit one with LocalProvider.fit_rotation") from None
    except (ValueError, OSError, EOFError) as exc:
        raise ConfigError(f"{source} is not a readable .npy matrix ({exc}); refit it") from None
    arr = check_rotation(arr, dim=dim, source=source)
    found = rotation_checksum(arr)
    if checksum is not None and found != checksum:
        raise ConfigError(f"{source} has checksum {found}, but {checksum} was expected: it is another "
                          "rotation, and vectors made with it would not match the stored ones")
    return arr


__all__ = ["check_rotation", "fit_rotation", "load_rotation", "rotation_checksum", "save_rotation"]
