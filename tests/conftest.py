"""Shared fixtures live in ``tests/fixtures/`` as pytest plugins, one module per concern."""

import os

from hypothesis import settings

pytest_plugins = [
    "tests.fixtures.levels",
    "tests.fixtures.shuffle",
    "tests.fixtures.ports",
    "tests.fixtures.server",
    "tests.fixtures.fake_llm",
    "tests.fixtures.broken_servers",
    "tests.fixtures.redis",
    "tests.fixtures.fault_proxy",
    "tests.fixtures.kafka",
    "tests.fixtures.buses",
    "tests.fixtures.outage",
    "tests.fixtures.postgres",
    "pytester",
]

# Everyday and CI runs are reproducible: the same examples every time, no example database.
# ``make fuzz`` selects the "fuzz" profile: many more examples, freshly random on each run.
settings.register_profile("ci", max_examples=150, derandomize=True, database=None, deadline=None)
settings.register_profile("fuzz", max_examples=4000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
