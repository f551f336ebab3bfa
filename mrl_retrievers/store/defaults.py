"""The settings every backend starts from when create() is given none (both record what they used)."""

# Measured on seeded MRL-like data (`python -m mrl_retrievers.bench.defaults`): see docs/defaults.md.
DEFAULT_SHORTLIST = 200
DEFAULT_EF = 400
DEFAULT_EXACT_BELOW = 2048
# Stores of at most this many live items are never calibrated (``Manifest.calibrates``): too few rows
# to leave each probe its own neighbours; below exact_below they are scanned exactly anyway.
MIN_CALIBRATED_LIVE = 1000
DEFAULT_M = 16
# Build effort of the coarse graph. Measured at 1M x 1024 (docs/benchmarks.md, "Build"): 100 or 150
# save only 25% or 12% of the build, and the graph then misses neighbours that no setting in tune's
# grid recovers (recall@10 <= 0.987 at shortlist 400 / ef 800), while 200 reaches 0.998 there.
DEFAULT_EF_CONSTRUCTION = 200
# What the coarse-index file format can hold (ann.check_header refuses M above 2048: hnswlib's
# layout allows it, but such a graph needs ~16 KB of links per element and no checkpoint of it
# could ever be loaded back).
MAX_M = 2048
MAX_EF_CONSTRUCTION = 1 << 20


# Rows per coarse-index segment (store/local/coarse.py): a checkpoint rewrites only segments that grew,
# so this bounds what one checkpoint writes and what a kill during a long build loses. Stores up to
# this size have one graph (no merge cost); 10M rows make 3 (a search queries each).
DEFAULT_SEGMENT_ROWS = 1 << 22

# The recall@10 searches aim for when no shortlist/ef is given (per call: ``target_recall=``).
DEFAULT_TARGET_RECALL = 0.99
