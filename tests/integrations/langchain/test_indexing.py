"""LangChain's indexing API (``index`` / ``aindex`` with a record manager): re-indexing unchanged
documents embeds nothing; changed ones are re-embedded and their old versions deleted."""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.indexing import InMemoryRecordManager, aindex, index

from langchain_mrl import MRLEmbeddings, MRLVectorStore


def _docs(version: int = 0) -> list[Document]:
    docs = [Document(page_content=f"chunk {i} of file {i % 3}", metadata={"source": f"f{i % 3}.txt"}) for i in range(9)]
    if version:
        docs[4] = Document(page_content=f"chunk 4 rewritten v{version}", metadata={"source": "f1.txt"})
    return docs


def test_reindexing_unchanged_documents_embeds_nothing(tmp_path) -> None:
    emb = MRLEmbeddings("fake", dim=16)
    vs = MRLVectorStore(emb, tmp_path / "idx")
    manager = InMemoryRecordManager(namespace="mrl/test")
    manager.create_schema()

    first = index(_docs(), manager, vs, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert first == {"num_added": 9, "num_updated": 0, "num_skipped": 0, "num_deleted": 0}
    embedded = emb.client.texts_embedded
    assert embedded == 9

    again = index(_docs(), manager, vs, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert again == {"num_added": 0, "num_updated": 0, "num_skipped": 9, "num_deleted": 0}
    assert emb.client.texts_embedded == embedded  # not one provider call

    changed = index(_docs(1), manager, vs, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert changed["num_added"] == 1 and changed["num_deleted"] == 1 and changed["num_skipped"] == 8
    assert emb.client.texts_embedded == embedded + 1
    assert len(vs.store) == 9
    assert vs.similarity_search("chunk 4 rewritten v1", k=1)[0].page_content == "chunk 4 rewritten v1"

    full = index(_docs(1)[:3], manager, vs, cleanup="full", source_id_key="source", key_encoder="sha256")
    assert full["num_deleted"] == 6 and len(vs.store) == 3
    vs.close()


async def test_aindex_is_idempotent_too(tmp_path) -> None:
    emb = MRLEmbeddings("fake", dim=16)
    vs = MRLVectorStore(emb, tmp_path / "aidx")
    manager = InMemoryRecordManager(namespace="mrl/atest")
    await manager.acreate_schema()
    first = await aindex(_docs(), manager, vs, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert first["num_added"] == 9
    embedded = emb.client.texts_embedded
    again = await aindex(_docs(), manager, vs, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert again["num_skipped"] == 9 and emb.client.texts_embedded == embedded
    changed = await aindex(_docs(2), manager, vs, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert changed["num_added"] == 1 and changed["num_deleted"] == 1
    assert emb.client.texts_embedded == embedded + 1 and len(vs.store) == 9
    vs.close()
