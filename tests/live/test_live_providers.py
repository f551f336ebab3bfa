"""Live checks against the real APIs. Marked ``live``; each is skipped unless its key is set.

Run: ``OPENAI_API_KEY=... GEMINI_API_KEY=... VOYAGE_API_KEY=... pytest -m live tests/live``.
They spend a few hundred tokens each. What they add over the loopback tests: the emulators' wire
format is still the real one (field names, base64, widths, normalization, task types).
"""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from mrl_retrievers.providers import get_provider

pytestmark = pytest.mark.live

DOCS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "Photosynthesis converts light energy into chemical energy in green plants.",
]
QUERY = "Which city is the Eiffel Tower in?"

CASES = [
    pytest.param("openai", ("OPENAI_API_KEY",), {"model": "text-embedding-3-small", "dim": 256}, id="openai-3-small"),
    pytest.param("openai", ("OPENAI_API_KEY",), {"model": "text-embedding-ada-002", "dim": 512}, id="openai-ada"),
    pytest.param("gemini", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), {"model": "gemini-embedding-001", "dim": 768},
                 id="gemini-001"),
    pytest.param("gemini", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), {"model": "gemini-embedding-2", "dim": 768},
                 id="gemini-2"),
    pytest.param("voyage", ("VOYAGE_API_KEY",), {"model": "voyage-4", "dim": 512}, id="voyage-4"),
]


@pytest.mark.parametrize("name, env_vars, options", CASES)
def test_live_provider(name, env_vars, options):
    if not any(os.environ.get(var) for var in env_vars):
        pytest.skip(f"set {' or '.join(env_vars)} to run the live {name} test")
    emb = get_provider(name, timeout=30.0, **options)
    docs = emb.embed_documents(DOCS)
    query = emb.embed_query(QUERY)

    assert docs.shape == (2, options["dim"]) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(query), 1.0, atol=1e-5)
    assert docs[0] @ query > docs[1] @ query  # the relevant passage ranks first

    async def both():
        try:
            return await emb.aembed_documents(DOCS), await emb.aembed_query(QUERY)
        finally:
            await emb.aclose()

    adocs, aquery = asyncio.run(both())
    # Real APIs are not bit-for-bit deterministic between calls; the same text lands in the same place.
    assert (np.sum(adocs * docs, axis=1) > 0.99).all() and float(aquery @ query) > 0.99
