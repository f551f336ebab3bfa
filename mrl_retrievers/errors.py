"""The whole exception tree of mrl-retrievers.

Every error the package raises on purpose is an ``MRLError``. Each class also subclasses the builtin
that matches its meaning, so ``except ValueError`` keeps working for callers that do not know us.
Messages state the values involved and what to do next.
"""

from __future__ import annotations


class MRLError(Exception):
    """Root of every error raised on purpose by mrl-retrievers."""


# --- configuration and environment -----------------------------------------------------------


class ConfigError(MRLError, ValueError):
    """A setting is missing, of the wrong type, or out of range."""


class MissingDependencyError(MRLError, ImportError):
    """An optional dependency is not installed; the message names what to install.

    By default that is an extra of the core (``pip install 'mrl-retrievers[{extra}]'``); ``install``
    names another pip requirement instead, e.g. a framework integration's own distribution
    (``install="langchain-mrl"``), which brings the missing package with it.
    """

    def __init__(self, package: str, extra: str, purpose: str = "", *, install: str = "") -> None:
        self.package = package
        self.extra = extra
        self.install = install or f"'mrl-retrievers[{extra}]'"
        what = f" ({purpose})" if purpose else ""
        super().__init__(f"{package!r} is not installed{what}. Install it with: pip install {self.install}")


# --- bad input --------------------------------------------------------------------------------


class InvalidInputError(MRLError, ValueError):
    """An argument was rejected before anything was written."""


class DimensionMismatchError(InvalidInputError):
    """A vector has another width than the store or provider expects."""


class InvalidVectorError(InvalidInputError):
    """A vector holds NaN/inf, is all zeros, or is not numeric."""


class DuplicateIdError(InvalidInputError):
    """The same id appears twice in one batch."""


class InvalidMetadataError(InvalidInputError):
    """Metadata is not a JSON object that JSON can carry (bytes, NaN, sets, non-string keys...)."""


class InvalidImageError(InvalidInputError):
    """An image cannot be read, is not a PNG, JPEG, GIF or WebP image, or comes in a form the model
    does not take (a URL where the API wants bytes, a WebP where it wants PNG or JPEG)."""


class UnsupportedModalityError(InvalidInputError):
    """An image (or an interleaved text + image input) was given to a model that cannot embed it.

    Raised before any request; the message names the model and the multimodal models to use.
    """

    def __init__(self, message: str, *, provider: str = "", model: str = "") -> None:
        self.provider = provider
        self.model = model
        super().__init__(message)


# --- filters ----------------------------------------------------------------------------------


class FilterError(InvalidInputError):
    """A filter is malformed (wrong operand type, bad key)."""


class UnsupportedFilterError(FilterError):
    """A filter uses an operator or shape we do not understand. Never silently matches everything."""


# --- stores -----------------------------------------------------------------------------------


class StoreError(MRLError):
    """Base of every error about a store on disk or on a server."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """The path does not exist, or is not a store (no manifest)."""


class StoreExistsError(StoreError, FileExistsError):
    """``create`` was asked to write over an existing store or a non-empty directory."""


class CorruptStoreError(StoreError):
    """A store file is damaged or inconsistent. The message names the file and the repair command."""


class UnsupportedFormatError(StoreError):
    """The store was written by a newer format version. It is not corrupt: upgrade, never rebuild."""


class StoreLockedError(StoreError, BlockingIOError):
    """Another process (or handle) holds the single-writer lock of this store."""


class ReadOnlyStoreError(StoreError, PermissionError):
    """A write was attempted through a read-only handle."""


class StoreIOError(StoreError, OSError):
    """The disk refused a read or write (full, I/O error, file-size limit). Nothing was acknowledged:
    the batch in flight was not written, and what was acknowledged before is intact."""


class StoreClosedError(StoreError):
    """The store handle was closed."""


class SpecMismatchError(StoreError, ValueError):
    """The embedding spec offered does not match the one the store was built with."""


# --- providers --------------------------------------------------------------------------------


class ProviderError(MRLError):
    """An embedding provider failed. Carries provider, model and (when known) HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = None,
    ) -> None:
        self.message = message  # without the [provider, model, status] suffix
        self.provider = provider
        self.model = model
        self.status = status
        where = ", ".join(
            p for p in (provider, model and f"model={model}", status is not None and f"status={status}") if p
        )
        super().__init__(f"{message} [{where}]" if where else message)


class AuthenticationError(ProviderError, PermissionError):
    """The API key was missing or refused."""


class RateLimitError(ProviderError):
    """Rate limited, and the retries were spent."""


class ProviderTimeoutError(ProviderError, TimeoutError):
    """The provider did not answer in time, and the retries were spent."""


class ProviderConnectionError(ProviderError, ConnectionError):
    """The provider could not be reached, and the retries were spent."""


class EmbeddingResponseError(ProviderError):
    """The provider answered with something we cannot use (wrong count, width, NaN, bad JSON)."""


class UnsupportedDimensionError(ProviderError, ValueError):
    """The model cannot produce the requested width. Raised before any request is sent."""


class ProviderRequestError(ProviderError, ValueError):
    """The provider refused the request as malformed (HTTP 400/404/413/422): not retried."""


class ProviderServerError(ProviderError):
    """The provider failed on its side (HTTP 5xx), and the retries were spent."""


__all__ = [
    "AuthenticationError",
    "ConfigError",
    "CorruptStoreError",
    "DimensionMismatchError",
    "DuplicateIdError",
    "EmbeddingResponseError",
    "FilterError",
    "InvalidImageError",
    "InvalidInputError",
    "InvalidMetadataError",
    "InvalidVectorError",
    "MRLError",
    "MissingDependencyError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderRequestError",
    "ProviderServerError",
    "ProviderTimeoutError",
    "RateLimitError",
    "ReadOnlyStoreError",
    "SpecMismatchError",
    "StoreClosedError",
    "StoreError",
    "StoreExistsError",
    "StoreIOError",
    "StoreLockedError",
    "StoreNotFoundError",
    "UnsupportedDimensionError",
    "UnsupportedFilterError",
    "UnsupportedFormatError",
    "UnsupportedModalityError",
]
