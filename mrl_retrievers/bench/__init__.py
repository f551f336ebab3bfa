"""Benchmarks and synthetic data (``mrl-retrievers bench``). Library code never imports this package."""
