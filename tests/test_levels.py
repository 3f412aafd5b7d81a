"""The test levels hold: an unmarked test that opens a socket fails and says which mark it
needs, a marked one runs, and contradictory marks stop the collection."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration  # each case runs pytest in a child process

CONFTEST = 'pytest_plugins = ["tests.fixtures.levels"]\n'
MARKERS = "[pytest]\nmarkers =\n    unit: u\n    integration: i\n    system: s\n"


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(CONFTEST)
    pytester.makeini(MARKERS)
    return pytester


SOCKET_TEST = """
import socket
import pytest

def listen():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))

def test_pure():
    assert sum([1, 2]) == 3

def test_unmarked_listener():
    listen()

@pytest.mark.integration
def test_marked_listener():
    listen()
"""


def test_an_unmarked_test_that_opens_a_socket_fails_naming_the_mark(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_levels_case=SOCKET_TEST)
    result = suite.runpytest_subprocess("-m", "unit")
    result.assert_outcomes(passed=2, errors=1)  # the failure is reported at teardown
    result.stdout.fnmatch_lines(["*a unit test may not open a socket*mark it integration*"])
    result = suite.runpytest_subprocess("-m", "integration")
    result.assert_outcomes(passed=1)


def test_a_mark_below_the_fixtures_level_or_two_marks_stop_the_collection(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(
        test_levels_case="""
import pytest

@pytest.fixture
def serve():
    return None

@pytest.mark.unit
def test_claims_unit(serve):
    pass

@pytest.mark.unit
@pytest.mark.system
def test_two_levels():
    pass
"""
    )
    result = suite.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*test_claims_unit: marked unit but its fixtures start a real part*", "*pick one*"]
    )
