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
* ``RLIMIT_NPROC`` = ``--max-processes``: processes and threads of the kernel's user (in
  the sandbox, that user has this sandbox alone): a fork bomb fails inside its notebook;
* ``RLIMIT_CPU`` = ``--cpu-s``: seconds of CPU time per process.

In the sandbox of a root grader (``asynclab.grading.sandbox``), ``--run-as UID`` then makes
the kernel its own unprivileged user, after it has read its connection file (which the
grader wrote for root only) and before any notebook code runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys

DEFAULT_FILE_MB = 256
# What every grading kernel's environment sets, sandboxed or not: one thread per numeric
# library, no bytecode written, no debugger warning.
KERNEL_SETTINGS = {"PYDEVD_DISABLE_FILE_VALIDATION": "1", "OPENBLAS_NUM_THREADS": "1",
                   "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def host_kernel_env() -> dict[str, str]:
    """The environment of an unsandboxed grading kernel: the grader's, with KERNEL_SETTINGS."""
    env = {**os.environ, **KERNEL_SETTINGS}
    env.pop("JUPYTER_PLATFORM_DIRS", None)
    return env


def without_debugger() -> None:
    """Grading kernels have no debugger: nobody attaches one, and ipykernel imports debugpy for
    it as it starts (0.1 s of every kernel). ipykernel starts without one when debugpy cannot
    be imported; call this before importing ipykernel."""
    sys.modules.setdefault("debugpy", None)  # type: ignore[arg-type]


def apply_limits(memory_mb: int | None, file_mb: int | None, max_processes: int | None = None,
                 cpu_s: int | None = None) -> None:
    """Lower this process's limits, the hard limit too: notebook code cannot raise them again."""

    def lower(which: int, value: int, hard_extra: int = 0) -> None:
        _, hard = resource.getrlimit(which)

        def within(limit: int) -> int:  # never above the current hard limit
            return limit if hard == resource.RLIM_INFINITY else min(limit, hard)

        resource.setrlimit(which, (within(value), within(value + hard_extra)))

    if memory_mb:
        lower(resource.RLIMIT_DATA, memory_mb * 1024 * 1024)
    if file_mb:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails, not the kernel
        lower(resource.RLIMIT_FSIZE, file_mb * 1024 * 1024)
    lower(resource.RLIMIT_CORE, 0)
    if max_processes:
        lower(resource.RLIMIT_NPROC, max_processes)
    if cpu_s:
        lower(resource.RLIMIT_CPU, cpu_s, hard_extra=5)  # SIGXCPU, then SIGKILL


def become(uid: int, connection_file: str, copy_to: str) -> str:
    """Switch to user ``uid`` (no groups, no capabilities left); returns the connection file
    to use, a copy in a folder the new user can read."""
    with open(connection_file, "rb") as original:
        info = original.read()
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:  # pragma: no cover - the kernel would be root
        raise SystemExit("asynclab.grading.kernel: could not give up root")
    fd = os.open(copy_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as copy:
        copy.write(info)
    return copy_to


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m asynclab.grading.kernel", add_help=False)
    parser.add_argument("--memory-mb", type=int, default=None)
    parser.add_argument("--file-mb", type=int, default=DEFAULT_FILE_MB)
    parser.add_argument("--max-processes", type=int, default=None)
    parser.add_argument("--cpu-s", type=int, default=None)
    parser.add_argument("--run-as", type=int, default=None)
    parser.add_argument("-f", dest="connection_file", default=None)
    ours, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    apply_limits(ours.memory_mb, ours.file_mb, ours.max_processes, ours.cpu_s)
    connection_file = ours.connection_file
    if ours.run_as is not None and connection_file:
        connection_file = become(ours.run_as, connection_file, "/tmp/home/kernel.json")
    if connection_file:
        rest = ["-f", connection_file, *rest]
    # What ipykernel_launcher does: the kernel's folder is not an import location.
    if sys.path and sys.path[0] in ("", ".", os.getcwd()):
        del sys.path[0]
    sys.argv = [sys.argv[0], *rest]
    without_debugger()
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
