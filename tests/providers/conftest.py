"""Fixtures for the provider tests: loopback API servers (see tests/providers/servers/fixtures.py)."""

from tests.providers.servers.fixtures import *  # noqa: F401,F403 - loopback server fixtures
