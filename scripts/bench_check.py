"""How long does a learner wait for ``asynclab check``?

Runs the real command, a new process each time as a learner types it, on a finished exercise
notebook (the reference answers: every check runs and passes), alternately with warm kernels
(the default: a fork server started first, whose imports overlap the command's own) and with
``--cold-kernels``, and prints for each: the median and slowest wall time, the median CPU time
the machine spent meanwhile (the command and everything it started), and how many runs took at
most the target.

    .venv/bin/python scripts/bench_check.py [--repeat 7] [--target 1.5] [NOTEBOOK ...]

The machine's other load moves every figure; the two variants are interleaved so that it
moves both alike. The notebooks' own cells count too: a lesson whose demo measures real
threads for a second is checked in more than a second, warm or cold.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-m", "asynclab.cli", "check"]


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (Linux), else this process's children's:
    a warm kernel is not our child (its fork server's), so only the machine sees it all. Run
    the bench on an otherwise idle machine."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(t) for t in stat.readline().split()[1:]]
    except OSError:
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        return used.ru_utime + used.ru_stime
    user, nice, system, _idle, _iowait, irq, softirq = ticks[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def run_check(notebook: Path, cold: bool) -> tuple[float, float]:
    """Wall and CPU seconds of one ``asynclab check``; stops if the notebook does not pass."""
    argv = [*COMMAND, str(notebook), *(["--cold-kernels"] if cold else [])]
    cpu, started = machine_cpu_s(), time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"asynclab check {notebook.name} exited {done.returncode}:\n"
                         f"{done.stdout}{done.stderr}")
    return wall, machine_cpu_s() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        default=[ROOT / "solutions" / "05_semaphore.ipynb"])
    parser.add_argument("--repeat", type=int, default=7, help="runs of each variant")
    parser.add_argument("--target", type=float, default=1.5, help="seconds a learner may wait")
    args = parser.parse_args()
    print(f"asynclab check, {args.repeat} runs each, {os.cpu_count()} cores; "
          f"wall median / slowest, CPU median, runs within {args.target:g} s")
    for notebook in args.notebooks:
        times: dict[str, list[tuple[float, float]]] = {"warm": [], "cold": []}
        run_check(notebook, cold=False)  # the first run of all reads files from disk
        for _ in range(args.repeat):
            for variant in times:
                times[variant].append(run_check(notebook, cold=variant == "cold"))
        medians = {}
        for variant, runs in times.items():
            walls = [wall for wall, _ in runs]
            medians[variant] = statistics.median(walls)
            within = sum(wall <= args.target for wall in walls)
            print(f"  {notebook.name:<36} {variant}: {medians[variant]:.2f} / {max(walls):.2f} s "
                  f"wall, {statistics.median(cpu for _, cpu in runs):.2f} s CPU, "
                  f"{within} of {len(walls)} within {args.target:g} s")
        print(f"  {'':<36} warm / cold: {medians['warm'] / medians['cold']:.2f}")


if __name__ == "__main__":
    main()
