"""Start an IPython kernel with hard resource limits: the kernel the judge runs notebooks in.

Usage (what ``asynclab.grading.judge`` puts in the kernel spec)::

    python -m asynclab.grading.kernel --memory-mb 2048 -f CONNECTION_FILE [ipykernel options]

Before the kernel starts, in the kernel's own process (inherited by anything it starts):

* ``RLIMIT_DATA`` = ``--memory-mb``: an allocation beyond it raises ``MemoryError``
  in the learner's cell instead of exhausting the machine (the host also polls the
  kernel's resident memory and kills it above the limit, for memory this limit
  does not count, such as shared mappings);
* ``RLIMIT_FSIZE`` = ``--file-mb``: no file the notebook writes grows beyond it
  (the write fails with an error instead of filling the disk);
* ``RLIMIT_CORE`` = 0: a crashing kernel leaves no core dump.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys

DEFAULT_FILE_MB = 256


def apply_limits(memory_mb: int | None, file_mb: int | None) -> None:
    """Lower this process's limits (never raise them above the current hard limit)."""

    def lower(which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, hard))

    if memory_mb:
        lower(resource.RLIMIT_DATA, memory_mb * 1024 * 1024)
    if file_mb:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails, not the kernel
        lower(resource.RLIMIT_FSIZE, file_mb * 1024 * 1024)
    lower(resource.RLIMIT_CORE, 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m asynclab.grading.kernel", add_help=False)
    parser.add_argument("--memory-mb", type=int, default=None)
    parser.add_argument("--file-mb", type=int, default=DEFAULT_FILE_MB)
    ours, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    apply_limits(ours.memory_mb, ours.file_mb)
    # What ipykernel_launcher does: the kernel's folder is not an import location.
    if sys.path and sys.path[0] in ("", ".", os.getcwd()):
        del sys.path[0]
    sys.argv = [sys.argv[0], *rest]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
