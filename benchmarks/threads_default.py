"""Seconds per epoch of the README's API snippet (LSTM3-100 teacher, GunPoint, batch 16) for torch
thread counts 1 .. cores, on an idle machine and with one core kept busy by another process
(a shared or loaded machine). Each setting runs in a fresh process; prints a Markdown table.

    python benchmarks/threads_default.py [EPOCHS]
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from earlykd.threads import cores, default_threads

RUN = """
import json, sys
from earlykd import api
run = api.train_teacher(data="GunPoint", arch="lstm", epochs={epochs}, batch_size=16, threads={threads},
                        progress=False, out=sys.argv[1])
print(json.dumps([run.record["seconds_per_epoch"], run.record["threads"]]))
"""
BUSY = "while True: pass"


def seconds_per_epoch(threads: int, epochs: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", RUN.format(epochs=epochs, threads=threads), f"{tmp}/t"],
                             check=True, capture_output=True, text=True).stdout
    return tuple(json.loads(out.strip().splitlines()[-1]))


def main(epochs: int = 3) -> None:
    n = cores()
    print(f"cores: {n}; earlykd default threads: {default_threads()}\n")
    print("| threads | idle s/epoch | one core busy s/epoch |\n|---|---|---|")
    for threads in sorted({1, 2, n} - {0}):
        idle = seconds_per_epoch(threads, epochs)[0]
        busy = subprocess.Popen([sys.executable, "-c", BUSY])
        try:
            loaded = seconds_per_epoch(threads, epochs)[0]
        finally:
            busy.kill()
            busy.wait()
        print(f"| {threads} | {idle:.3f} | {loaded:.3f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
