"""`make bench`: runs every benchmark and prints one line of ratios each."""

from __future__ import annotations

import sys

from bench import draw, interceptors, purchase, watch_house


def main() -> None:
    for benchmark in (interceptors, draw, purchase, watch_house):
        sys.stdout.write(benchmark.run() + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
