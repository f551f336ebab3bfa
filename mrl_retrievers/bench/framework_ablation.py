"""Our integration code per retriever call, piece by piece (docs/benchmarks.md, "Our integration code per call").

Run: ``python -m mrl_retrievers.bench.framework_ablation`` (needs the LangChain and LlamaIndex
integrations installed). Builds a 5,000 x 1024 store in a temporary folder and times each piece of
``MRLRetriever._retrieve`` / ``MRLVectorStore.query`` alone (best of 7 x 2000 calls, k=10), so the
frameworks' own machinery (events, spans, callbacks) stays out of "our code"; a call "over bare" is
the median of 3000 differences, each timed back to back with a bare ``store.search``.
"""
import pathlib
import statistics
import tempfile
import time
import timeit

import numpy as np
from langchain_core.documents import Document
from langchain_mrl import MRLEmbeddings, MRLRetriever, MRLVectorStore
from llama_index.core.schema import QueryBundle, TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery
from llama_index.embeddings.mrl import MRLEmbedding
from llama_index.retrievers.mrl import MRLRetriever as LIR
from llama_index.retrievers.mrl.base import _scored
from llama_index.vector_stores.mrl import MRLVectorStore as LIS
from llama_index.vector_stores.mrl.base import QUERY_ARRAY

from mrl_retrievers import MRLStore
from mrl_retrievers.bench.framework import StoredQueries


def main() -> None:
    rng = np.random.default_rng(0)
    n, dim = 5000, 1024
    data = rng.standard_normal((n, dim)).astype(np.float32)
    q = rng.standard_normal((1, dim)).astype(np.float32)
    store = MRLStore.create(pathlib.Path(tempfile.mkdtemp()) / "s", full_dim=dim, prefix_dim=128, exact_below=0)
    store.add([f"doc-{i}" for i in range(n)], data, texts=[f"passage number {i} " * 8 for i in range(n)])
    prov = StoredQueries("m", dim, q)
    emb, vs = MRLEmbedding(prov), LIS(store)
    li = LIR(vs, emb, similarity_top_k=10)
    lcvs = MRLVectorStore(MRLEmbeddings(prov), store=store)
    lc = MRLRetriever(vectorstore=lcvs, k=10)
    v = q[0]
    listed = emb.get_query_embedding("q0")
    arr = emb.query_array(listed)
    vsq = VectorStoreQuery(query_embedding=listed, similarity_top_k=10)
    res = vs.query(vsq, **{QUERY_ARRAY: arr})
    hits = store.search(v, k=10)

    def t(f, number=2000):
        return min(timeit.repeat(f, number=number, repeat=7)) / number * 1e6

    def over_bare(f, pairs=3000):
        """Median of (f - a bare search), each pair timed back to back: a difference of two
        separately timed minima carries the search's own jitter (8.8 to 62.8 us in three runs)."""
        diffs = []
        for i in range(pairs + 300):
            t0 = time.perf_counter()
            store.search(v, k=10)
            t1 = time.perf_counter()
            f()
            t2 = time.perf_counter()
            if i >= 300:  # warm-up
                diffs.append((t2 - t1) - (t1 - t0))
        return statistics.median(diffs) * 1e6

    ours_embed = t(lambda: emb._listed(emb._provider.embed_query("q0")))
    bare = t(lambda: store.search(v, k=10))
    rows = {
        "bare store.search (k=10)": bare,
        "LI: our embedding code (provider + tolist)": ours_embed,
        "LI: VectorStoreQuery(...)": t(lambda: li._query(QueryBundle(query_str="q0"), listed)),
        "LI: vector_store.query - bare, array handed over": over_bare(lambda: vs.query(vsq, **{QUERY_ARRAY: arr})),
        "LI: vector_store.query - bare, list converted": over_bare(lambda: vs.query(vsq)),
        "LI:   10 TextNodes (LlamaIndex's data model)": t(lambda: [TextNode(id_=h.id, text=h.text, metadata=h.metadata) for h in hits]),
        "LI: _scored: 10 NodeWithScore (LlamaIndex's data model)": t(lambda: _scored(res)),
        "LI: whole retrieve - bare": over_bare(lambda: li.retrieve("q0")),
        "LI: framework: get_query_embedding - our embedding code": t(lambda: emb.get_query_embedding("q0")) - ours_embed,
        "LC: similarity_search - bare": over_bare(lambda: lcvs.similarity_search("q0", k=10)),
        "LC:   10 Documents (LangChain's data model)": t(lambda: [Document(page_content=h.text, metadata=h.metadata, id=h.id) for h in hits]),
        "LC: whole invoke - bare": over_bare(lambda: lc.invoke("q0")),
    }
    for name, us in rows.items():
        print(f"| {name} | {us:.1f} |")
    store.close()


if __name__ == "__main__":
    main()
