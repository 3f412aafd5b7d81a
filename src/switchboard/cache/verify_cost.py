"""What the guards cost a semantic lookup: ``python -m switchboard.cache.verify_cost``.

A semantic candidate is checked on the turn's path (``guard_refusal``: the named guards, then
the content check). The stored line has usually been checked before (its features are
memoised); the caller's line is new. Both cases are timed over the same pairs of lines:
*cold* (the caller's line seen for the first time, the stored line already known) and *warm*
(both known). Prints p50 and p99 in microseconds.

Pairs come from a tab-separated file (``--pairs``; default: the paraphrase suite of a
checkout, whose pairs mostly pass every guard, so every check runs), repeated ``--rounds``
times, each round with fresh caller lines (the same words, new punctuation).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from switchboard.cache.guards import guard_refusal


def _pairs(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#") and "\t" in line:
            a, b = line.split("\t", 1)
            out.append((a.strip(), b.strip()))
    return out


def _micros(caller: str, stored: str) -> float:
    started = time.perf_counter_ns()
    guard_refusal(caller, stored)
    return (time.perf_counter_ns() - started) / 1000


def measure(pairs: list[tuple[str, str]], rounds: int) -> dict[str, list[float]]:
    cold: list[float] = []
    warm: list[float] = []
    for round_ in range(rounds):
        for caller, stored in pairs:
            guard_refusal(stored, stored)  # the stored line is known
            fresh = caller + "." * (round_ + 1)  # never seen before, same words
            cold.append(_micros(fresh, stored))
            warm.append(_micros(fresh, stored))
    return {"cold": cold, "warm": warm}


def _p(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100)[q - 1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=Path("tests/cache_data/paraphrases.tsv"))
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not args.pairs.is_file():
        parser.error(f"no such pairs file: {args.pairs}")
    pairs = _pairs(args.pairs)
    if not pairs:
        parser.error(f"no tab-separated pairs in {args.pairs}")
    results = measure(pairs, args.rounds)
    for name, values in results.items():
        print(
            f"guard_refusal {name:4}: p50 {_p(values, 50):6.1f} us  p99 {_p(values, 99):6.1f} us"
            f"  ({len(values)} checks)"
        )


if __name__ == "__main__":
    main()
