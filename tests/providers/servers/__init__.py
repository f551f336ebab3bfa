"""Pytest fixtures and the emulators' own tests; the emulators themselves are ``mrl_retrievers.emulators``."""
