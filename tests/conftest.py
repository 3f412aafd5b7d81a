"""Shared fixtures live in ``tests/fixtures/`` as pytest plugins, one module per concern."""

pytest_plugins = [
    "tests.fixtures.ports",
    "tests.fixtures.server",
    "tests.fixtures.fake_llm",
    "tests.fixtures.broken_servers",
    "tests.fixtures.redis",
    "tests.fixtures.fault_proxy",
]
