"""Start-up time of the command line: wall seconds of `earlykd --help`, `earlykd methods` and
`earlykd teacher --help` as fresh processes (median of N), printed as a Markdown table.

    python benchmarks/cli_startup.py [N]
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

EARLYKD = str(Path(sys.executable).with_name("earlykd"))
COMMANDS = (["--help"], ["teacher", "--help"], ["methods"], ["datasets"])


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([EARLYKD, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(n: int = 5) -> None:
    print("| command | median s | min s |\n|---|---|---|")
    for args in COMMANDS:
        times = [seconds(args) for _ in range(n)]
        print(f"| `earlykd {' '.join(args)}` | {statistics.median(times):.2f} | {min(times):.2f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
