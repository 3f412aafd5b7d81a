"""Run the test suite several times with a CPU hog on every core (``make test-stress``).

A test that passes only on an idle machine is flaky; this is how a busy CI runner looks.
Each hog is a child process spinning in a loop; all are killed when the runs end, however
they end. Exit status: 0 if every run passed, else the first failing run's status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

_HOG = "while True: pass"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    hogs = [subprocess.Popen([sys.executable, "-c", _HOG]) for _ in range(args.hogs)]
    status = 0
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            code = subprocess.call([sys.executable, "-m", "pytest", "-q", *args.pytest_args])
            took = time.monotonic() - started
            print(f"stress run {run}/{args.runs}: exit {code} in {took:.0f} s", flush=True)
            if code != 0 and status == 0:
                status = code
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()
    print(f"stress: {args.runs} runs with {args.hogs} busy cores, exit {status}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
