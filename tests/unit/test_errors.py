"""MissingDependencyError: the core's extra by default, another pip requirement when given one."""

from __future__ import annotations

from mrl_retrievers.errors import MissingDependencyError, MRLError


def test_names_the_core_extra_by_default() -> None:
    exc = MissingDependencyError("qdrant-client", "qdrant", "the Qdrant store backend")
    assert str(exc) == ("'qdrant-client' is not installed (the Qdrant store backend). "
                        "Install it with: pip install 'mrl-retrievers[qdrant]'")
    assert (exc.package, exc.extra, exc.install) == ("qdrant-client", "qdrant", "'mrl-retrievers[qdrant]'")
    assert isinstance(exc, ImportError) and isinstance(exc, MRLError)


def test_install_names_a_distribution_instead() -> None:
    exc = MissingDependencyError("langchain-core", "langchain", "needed by langchain_mrl", install="langchain-mrl")
    assert str(exc) == ("'langchain-core' is not installed (needed by langchain_mrl). "
                        "Install it with: pip install langchain-mrl")
    assert exc.extra == "langchain" and exc.install == "langchain-mrl"
