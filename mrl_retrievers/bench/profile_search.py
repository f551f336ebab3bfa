"""Where a search's time goes: ``MRLStore.search``'s steps one by one, a timestamp between them.

Run: ``OPENBLAS_NUM_THREADS=1 python -m mrl_retrievers.bench.profile_search DATASET_DIR [ro]`` where
DATASET_DIR is a bench dataset folder whose ``ours-p128-M16-efc200-tuned200/store`` was built by
``bench`` (``ro``: open the store read-only). The stages add up to the whole call (a timestamp
costs ~0.1 us); tight loop over the 1000 queries, 3 passes, medians, beside a plain
``store.search`` loop. The stages are the store's own (``MRLStore.diagnostics.search_stages``, under
its read lock); what is spelled out here is the fixed-effort path of ``search.Searcher.one`` and
``search.rerank`` without a funnel: when that path changes, this copy must follow it.
"""
import sys, time, statistics
import numpy as np
from pathlib import Path
from mrl_retrievers.store import MRLStore
from mrl_retrievers.store.local.search import top_k
from mrl_retrievers.store.local.vectors import dot
from mrl_retrievers.mrl import unit_vector
from mrl_retrievers import filters

root = Path(sys.argv[1])  # noqa: the dataset folder of a bench run
Q = np.load(root / "queries-1000.npy")
store = MRLStore.open(root / "ours-p128-M16-efc200-tuned200" / "store", read_only=len(sys.argv) > 2)
ns = time.perf_counter_ns
for q in Q: store.search(q, k=10)
NAMES = ["validate + normalize query", "parse_filter", "plan + read lock enter (+ catch-up check)",
         "coarse: prefix + hnswlib knn_query (all segments)", "rerank: sort + dup check",
         "rerank: gather (prefetch + fancy-index copy)", "rerank: CRC bitmap check", "rerank: float16 dot",
         "rerank: top_k", "to_hits: SQLite by_rows + Hit objects", "read lock exit"]
def one(vector, k=10):
    t = [ns()]
    query = unit_vector(vector, store.full_dim); t.append(ns())
    flt = filters.parse_filter(None); t.append(ns())  # search() skips this for filter=None
    def run(st):
        t.append(ns())
        rows, _sims = st.coarse(query); t.append(ns())
        rows = np.sort(rows)
        if len(rows) > 1 and (rows[1:] == rows[:-1]).any(): rows = np.unique(rows)
        t.append(ns())
        stored = st.gather(rows); t.append(ns())
        st.check(rows, stored); t.append(ns())
        sc = dot(stored, query); t.append(ns())
        best, scores = top_k(rows, sc, k); t.append(ns())
        hits = st.hits(best, scores); t.append(ns())
        return hits
    store.diagnostics.search_stages(run, k=k); t.append(ns())
    return t
stages = {n: [] for n in NAMES}; whole_inl = []; whole = []
for rep in range(3):
    for q in Q:
        t0 = ns(); store.search(q, k=10); whole.append(ns() - t0)
    for q in Q:
        t = one(q)
        whole_inl.append(t[-1] - t[0])
        for n, a, b in zip(NAMES, t, t[1:]): stages[n].append(b - a)
med = lambda xs: statistics.median(xs) / 1000
print(f"store.search p50 (tight loop, 3 x {len(Q)} queries): {med(whole):.1f} us; inlined copy p50: {med(whole_inl):.1f} us; mean {statistics.mean(whole)/1000:.1f} / {statistics.mean(whole_inl)/1000:.1f}")
tot = 0
for n in NAMES:
    m = statistics.mean(stages[n]) / 1000; tot += m
    print(f"| {n} | {med(stages[n]):.1f} | {m:.1f} |")
print("sum of stage means", round(tot, 1))
print("manifest", store.manifest.prefix_dim, store.manifest.shortlist, store.manifest.ef)
