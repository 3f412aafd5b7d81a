"""``--shuffle SEED``: another order, the same for the same seed, modules kept whole."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration  # pytester runs pytest in this process on temp files


def _order(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest_inprocess(
        "-p", "tests.fixtures.shuffle", "--collect-only", "-q", *args
    )
    return [line for line in result.outlines if "::" in line]


def test_a_seed_gives_one_order_and_keeps_each_module_together(pytester: pytest.Pytester) -> None:
    for name in "abcdef":
        pytester.makepyfile(
            **{f"test_{name}": "\n".join(f"def test_{i}(): pass" for i in range(8))}
        )
    plain = _order(pytester)
    first = _order(pytester, "--shuffle", "7")
    assert first == _order(pytester, "--shuffle", "7")
    assert sorted(first) == sorted(plain)
    assert first != plain
    assert _order(pytester, "--shuffle", "8") != first
    modules = [nodeid.split("::")[0] for nodeid in first]
    runs = [m for i, m in enumerate(modules) if i == 0 or modules[i - 1] != m]
    assert sorted(runs) == sorted(set(modules))  # each module's tests run in one stretch
