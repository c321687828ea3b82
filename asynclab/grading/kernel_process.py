"""One kernel process, run under hard limits: the part of the judge that touches processes.

``KernelRun`` starts a fresh kernel (``python -m asynclab.grading.kernel``: memory and
file-size limits set inside the kernel's own process), executes cells one at a time with
nbclient's async API, and enforces from outside what the kernel cannot be trusted with:

* a time limit per cell: nbclient's own timeout first; then the kernel's whole process
  tree is killed with psutil (a kernel stuck in a top-level ``await`` ignores
  interrupts), and an ``asyncio.timeout`` a little later is the backstop;
* a memory limit: the resident memory of the kernel's process tree is polled and the
  tree killed above ``memory_mb`` (for memory ``RLIMIT_DATA`` does not count, such as
  shared mappings);
* an output cap per cell: a flood of output is dropped (errors are always kept), so
  it costs the host no memory.

``stop()`` always kills the tree; a kernel is never asked to shut down politely.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import queue
import re
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import nbformat
import psutil

from asynclab.grading.kernel import host_kernel_env

__all__ = ["Limits", "CellRun", "KernelRun", "kill_tree", "tree_rss_mb", "raise_if_cancelling"]

KILL_GRACE_S = 10.0
KILL_REASONS = ("timeout", "hung", "memory", "disk")  # why the host kills a kernel: cell statuses
MEMORY_POLL_S = 0.25
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Limits:
    """How one notebook is run and judged."""

    timeout_cell: float = 60.0  # seconds for one cell
    timeout_notebook: float = 300.0  # from the first ready kernel to the last verdict, re-runs included
    memory_mb: int = 2048  # kernel data segment limit, and resident-memory kill line
    startup_timeout: float = 60.0  # seconds for a kernel to start
    output_cap_bytes: int = 1_000_000  # per cell; the rest of a flood is dropped
    variants: tuple[str, ...] = ("public",)
    want_png: bool = False
    sandbox: bool = False  # each kernel in a bubblewrap sandbox (asynclab.grading.sandbox)
    max_processes: int = 512  # processes and threads of one sandboxed kernel (RLIMIT_NPROC)
    folder_cap_mb: int = 64  # what a sandboxed kernel may write into the host folders it shares
    warm_kernels: bool = True  # kernels forked from a warm zygote (grading.zygote)


@dataclass
class CellRun:
    """How one executed cell went."""

    label: str
    role: str
    status: str  # "ok" | "error" | "timeout" | "hung" | "died" | "memory" | "disk" | "not run"
    seconds: float = 0.0
    error: str = ""  # "ZeroDivisionError: division by zero"
    traceback: str = ""
    truncated_output: bool = False


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into another exception.

    nbclient converts a CancelledError that reaches a running cell into
    DeadKernelError; a Ctrl-C must still stop the grader, not grade the
    notebook as if its kernel had died.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def kill_tree(pid: int | None) -> list[psutil.Process]:
    """SIGKILL a process and all its descendants; returns them (to wait for)."""
    if not pid:
        return []
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return procs


def wait_dead(procs: list[psutil.Process], timeout: float) -> None:
    """Wait until each process has exited (gone, or a zombie: dead, waiting to be reaped).

    A zombie counts as dead: a sandbox's processes are reaped by whoever adopts them, which
    in a container may be slow to do it, and they hold nothing any more.
    """
    deadline = time.monotonic() + timeout
    pending = list(procs)
    while pending and time.monotonic() < deadline:
        still = []
        for proc in pending:
            with contextlib.suppress(psutil.Error):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    still.append(proc)
        pending = still
        if pending:
            time.sleep(0.005)


def tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total / (1024 * 1024)


IPYKERNEL_ARGS = ("--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=CRITICAL")


def _cpu_s(limits: Limits) -> int:
    return int(limits.timeout_notebook + limits.startup_timeout + KILL_GRACE_S)


def _kernel_argv(limits: Limits, sandbox: list[str] | None = None,
                 run_as: int | None = None) -> list[str]:
    """The kernel's command line; in a sandbox, behind ``bwrap ... --`` and with the limits
    that only make sense there (processes of its own user, CPU time)."""
    argv = [sys.executable, "-m", "asynclab.grading.kernel", "--memory-mb", str(limits.memory_mb)]
    if sandbox is not None:
        argv = [*sandbox, *argv, "--max-processes", str(limits.max_processes),
                "--cpu-s", str(_cpu_s(limits))]
        if run_as is not None:
            argv += ["--run-as", str(run_as)]
    return [*argv, "-f", "{connection_file}", *IPYKERNEL_ARGS]


def _warm_request(limits: Limits, run_as: int | None, log: Path,
                  workdir: Path | None = None) -> dict[str, Any]:
    """What the zygote needs to make this notebook's kernel (``grading.zygote``): the same
    limits, user, environment, folder and ipykernel options as ``_kernel_argv`` gives a cold
    one; unsandboxed (``workdir`` given), the grader's environment and the memory limit only."""
    if workdir is not None:
        return {"limits": {"memory_mb": limits.memory_mb}, "run_as": None,
                "cwd": str(workdir / "work"), "env": host_kernel_env(),
                "kernel_args": list(IPYKERNEL_ARGS), "log": str(log)}
    from asynclab.grading import sandbox

    return {"limits": {"memory_mb": limits.memory_mb, "max_processes": limits.max_processes,
                       "cpu_s": _cpu_s(limits)},
            "run_as": run_as, "cwd": "/tmp/work", "env": sandbox.kernel_env(),
            "kernel_args": list(IPYKERNEL_ARGS), "log": str(log)}


def _content_size(content: dict) -> int:
    """Roughly how many bytes an output message carries (its text and its data)."""
    size = len(str(content.get("text", "")))
    for value in (content.get("data") or {}).values():
        size += len(value) if isinstance(value, (str, bytes)) else len(str(value))
    return size + sum(len(str(line)) for line in content.get("traceback", []) or [])


def folder_mb(folders: list[Path], max_entries: int = 10_000) -> float:
    """Megabytes of the files under ``folders`` (a bounded walk: enough to catch a flood)."""
    total = entries = 0
    stack = list(folders)
    while stack and entries < max_entries:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as found:
            for entry in found:
                entries += 1
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
    return total / (1024 * 1024) if entries < max_entries else float("inf")


def _make_client(cells: list[Any], limits: Limits, argv: list[str], ipc_dir: Path):
    """An nbclient client for ``cells`` with our kernel spec and an output cap.

    The kernel and the grader talk over Unix sockets in ``ipc_dir`` (jupyter_client's ``ipc``
    transport): the only way into a sandbox without a network and, in or out of one, socket
    files that say when the kernel listens (``KernelRun._sockets_bound``).
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    class GradingKernelSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str, *args: Any, **kwargs: Any) -> KernelSpec:
            return KernelSpec(argv=argv, display_name="asynclab grading",
                              language="python", name=kernel_name, interrupt_mode="signal")

    class CappedClient(NotebookClient):
        """Keeps at most ``output_cap_bytes`` of output per cell: a flood costs no memory."""

        def output(self, outs, msg, display_id, cell_index):  # type: ignore[override]
            size = _content_size(msg.get("content", {}))
            used = self._output_bytes.get(cell_index, 0) + size
            self._output_bytes[cell_index] = used
            if used > limits.output_cap_bytes and msg.get("msg_type") != "error":
                self._truncated.add(cell_index)
                return None
            return super().output(outs, msg, display_id, cell_index)

    km = AsyncKernelManager(kernel_name="asynclab-grading", kernel_spec_manager=GradingKernelSpecs(),
                            transport="ipc", ip=str(ipc_dir / "kernel"),
                            connection_file=str(ipc_dir / "kernel.json"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.source) for c in cells]
    client = CappedClient(nb, km=km, allow_errors=True, startup_timeout=int(limits.startup_timeout),
                          iopub_timeout=4, record_timing=False, coalesce_streams=False)
    client._output_bytes = {}
    client._truncated = set()
    client._replies = {}

    def keep_reply(cell: Any, cell_index: int, execute_reply: dict | None) -> None:
        client._replies[cell_index] = (execute_reply or {}).get("content", {})

    client.on_cell_executed = keep_reply
    client.reset_execution_trackers()
    return client, km, nb


def _cell_error(reply: dict[str, Any]) -> tuple[str, str]:
    """("ZeroDivisionError: division by zero", traceback) from an execute_reply's content."""
    if reply.get("status") != "error":
        return "", ""
    ename, evalue = str(reply.get("ename", "Error")), str(reply.get("evalue", ""))
    lines = ANSI.sub("", "\n".join(map(str, reply.get("traceback", []) or []))).splitlines()
    if len(lines) > 30:
        lines = ["...", *lines[-30:]]
    return (f"{ename}: {evalue}"[:500] if evalue else ename), "\n".join(lines)[-4000:]


class KernelRun:
    """One kernel, started fresh; executes cells; killed (never asked) at the end.

    ``kill_reason`` says why the host killed it ("timeout", "memory", "disk"), so a
    dead kernel is explained with the right words.
    """

    def __init__(self, cells: list[Any], limits: Limits, workdir: Path,
                 on_kernel: Callable[[int | None], None] | None = None,
                 shared: tuple[Path, ...] = (), idle_report: Path | None = None) -> None:
        """``workdir``: the host folder of this notebook's run. ``shared``: host folders the
        kernel must write (the judge's verdicts); in a sandbox, they and a fresh ``run``
        folder (sockets) are the only host folders it sees."""
        self.cells, self.limits, self.workdir = cells, limits, workdir
        self.idle_report = idle_report
        self.kill_reason: str | None = None
        self.pid: int | None = None
        self.kernel_pid: int | None = None
        self.uid: int | None = None
        self._watchdog: asyncio.Task | None = None
        self._on_kernel = on_kernel
        self._log = None
        self._given_shared = tuple(shared)
        self._shared: list[Path] = list(shared)
        self._run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))  # the kernel's sockets
        if limits.sandbox:
            from asynclab.grading import sandbox

            self._shared.append(self._run_dir)
            self.uid = sandbox.UIDS.take()
            if self.uid is not None:  # a root grader: the kernel's own user must write them,
                for folder in self._shared:  # and root (without capabilities there) read
                    os.chown(folder, self.uid, self.uid)  # its connection file in run_dir
                    os.chmod(folder, 0o711)
        else:
            (workdir / "work").mkdir(exist_ok=True)
        self._prepare(warm=limits.warm_kernels)

    def _prepare(self, warm: bool) -> None:
        """The nbclient client and kernel manager of a warm kernel or a cold one. Over ipc
        either way: its socket files say when the kernel listens (``_sockets_bound``)."""
        limits, workdir = self.limits, self.workdir
        if limits.sandbox:
            from asynclab.grading import sandbox

            spec = sandbox.SandboxSpec(self._run_dir, self._given_shared, warm=warm)
            if warm:
                from asynclab.grading import zygote

                argv = [*sandbox.bwrap_argv(spec), *zygote.placeholder_argv()]
            else:
                argv = _kernel_argv(limits, sandbox.bwrap_argv(spec), self.uid)
        else:
            argv = _kernel_argv(limits)
        self.client, self.km, self.nb = _make_client(self.cells, limits, argv,
                                                     ipc_dir=self._run_dir)
        if warm:
            workdir_if_unsandboxed = None if limits.sandbox else workdir
            self._use_warm_kernel(_warm_request(limits, self.uid, workdir / "kernel.log",
                                                workdir_if_unsandboxed))

    def _use_warm_kernel(self, request: dict[str, Any]) -> None:
        """Have the zygote make this kernel (``asynclab.grading.zygote``), instead of a new
        Python started from the kernel spec's command line."""
        from asynclab.grading import zygote

        self.km.kernel_id = str(uuid.uuid4())
        provisioner = zygote.provisioner_class(self.limits.sandbox)(
            kernel_id=self.km.kernel_id, kernel_spec=self.km.kernel_spec, parent=self.km)
        provisioner.request = request
        self.km.provisioner = provisioner

    async def start(self) -> None:
        self._log = open(self.workdir / "kernel.log", "ab")  # noqa: SIM115 - closed in stop()
        try:
            await self._launch()
        except Exception as exc:
            from asynclab.grading import zygote

            if not isinstance(exc, zygote.NoWarmKernel):
                raise
            zygote.say_cold(exc)
            # The fork server failed (never the notebook: no notebook code has run yet). The
            # kernel starts cold instead, which gives the same verdicts, only later.
            self._log.write(f"asynclab: no warm kernel ({exc}); starting a cold one\n".encode())
            self._log.flush()
            # A sandbox may be waiting for the warm kernel: it goes, with its manager.
            await self._release(kill_tree(getattr(self.km.provisioner, "pid", None)))
            self._prepare(warm=False)
            await self._launch()
        self.pid = getattr(self.km.provisioner, "pid", None)
        # A warm kernel is not a descendant of its sandbox's first process: watch and kill both.
        self.kernel_pid = getattr(self.km.provisioner, "kernel_pid", None)
        if self._on_kernel:
            self._on_kernel(self.pid)
        self._watchdog = asyncio.create_task(self._watch_memory(), name="memory watchdog")
        async with asyncio.timeout(self.limits.startup_timeout + KILL_GRACE_S):
            await self._sockets_bound()
            await self._connect()

    async def _launch(self) -> None:
        await self.km.start_kernel(cwd=str(self.workdir / ("." if self.limits.sandbox else "work")),
                                   env=host_kernel_env(), stdout=self._log, stderr=self._log)

    async def _sockets_bound(self) -> None:
        """Wait until the kernel has made its ipc sockets before connecting to them: a client
        that connects first waits for zmq's next retry (measured: 65 ms a kernel)."""
        files = [Path(f"{self.km.ip}-{port}") for port in
                 (self.km.shell_port, self.km.iopub_port, self.km.stdin_port,
                  self.km.control_port, self.km.hb_port)]
        while not all(f.exists() for f in files):
            if not await self.km.is_alive():
                return  # _connect says what went wrong
            await asyncio.sleep(0.002)

    async def _connect(self) -> None:
        """nbclient's ``async_start_new_kernel_client``, without jupyter_client's last step.

        ``wait_for_ready`` ends by reading IOPub until it has been quiet for 0.2 s: 0.2 s of
        every kernel's start spent waiting for nothing. It is not needed here: the kernel has
        answered on the shell channel and spoken on IOPub (so IOPub is connected and no output
        is lost), and nbclient keeps only the IOPub messages of the cell it runs.
        """
        kc = self.client.kc = self.km.client()
        kc.start_channels()
        while True:
            kc.kernel_info()
            with contextlib.suppress(queue.Empty):
                reply = await kc.shell_channel.get_msg(timeout=1)
                if reply["msg_type"] == "kernel_info_reply":
                    with contextlib.suppress(queue.Empty):
                        await kc.iopub_channel.get_msg(timeout=0.2)
                        break
            if not await self.km.is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
        kc.allow_stdin = False

    async def _watch_memory(self) -> None:
        """Kill the kernel above its memory limit, or (in a sandbox) when it fills the host
        folders it shares with the grader."""
        polls = 0
        while self.pid is not None:
            await asyncio.sleep(MEMORY_POLL_S)
            polls += 1
            if sum(tree_rss_mb(pid) for pid in self._roots()) > self.limits.memory_mb:
                self.kill("memory")
                return
            if self.limits.sandbox and polls % 4 == 0 \
                    and folder_mb(self._shared) > self.limits.folder_cap_mb:
                self.kill("disk")
                return

    def _roots(self) -> list[int]:
        """The processes whose trees are this kernel's: the kernel (or its sandbox), and a warm
        kernel's own process, which is not a descendant of its sandbox's first process."""
        return [pid for pid in (self.kernel_pid, self.pid) if pid]

    def kill(self, reason: str) -> None:
        """Kill the kernel's trees; the first reason given is the one the verdict tells."""
        if self.kill_reason is None:
            self.kill_reason = reason
        for pid in self._roots():
            kill_tree(pid)

    async def run_cell(self, index: int, budget: float, store_history: bool) -> CellRun:
        """Execute cell ``index`` within ``budget`` seconds; the kernel is killed if it overruns."""
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        planned, cell = self.cells[index], self.nb.cells[index]
        run = CellRun(planned.label, planned.role, "ok")
        started = time.monotonic()
        self.client.timeout_func = lambda _cell: max(budget, 0.1)
        watch = (asyncio.create_task(self._stop_if_hung(), name="hung watch")
                 if self.idle_report is not None and planned.role != "setup" else None)
        try:
            async with asyncio.timeout(budget + KILL_GRACE_S):  # nbclient's own limit comes first
                await self.client.async_execute_cell(cell, index, store_history=store_history)
        except CellTimeoutError:
            self.kill("timeout")
            run.status = self.kill_reason  # "hung" when the hung watch stopped it first
        except (DeadKernelError, TimeoutError, RuntimeError, OSError) as exc:
            raise_if_cancelling()  # nbclient turns our cancellation into DeadKernelError
            expired = isinstance(exc, TimeoutError)
            if expired:
                self.kill("timeout")
            run.status = self.kill_reason if self.kill_reason in KILL_REASONS else "died"
            if self.kill_reason is None and not isinstance(exc, DeadKernelError):
                run.error = f"{type(exc).__name__}: {exc}"
        else:
            run.error, run.traceback = _cell_error(self.client._replies.get(index, {}))
            if run.error:
                run.status = "error"
        finally:
            if watch is not None:
                watch.cancel()
        run.seconds = round(time.monotonic() - started, 3)
        run.truncated_output = index in self.client._truncated
        return run

    async def _stop_if_hung(self) -> None:
        """Stop the cell once the kernel says nothing can ever wake it (``grading.idle``)."""
        from asynclab.grading import idle

        assert self.idle_report is not None
        while True:
            await asyncio.sleep(idle.INTERVAL_S)
            if idle.read_report(self.idle_report):
                self.kill("hung")
                return

    async def stop(self) -> None:
        """Kill the kernel's process tree and release everything; never raises."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        procs = kill_tree(self.kernel_pid)
        procs += kill_tree(self.pid or getattr(getattr(self.km, "provisioner", None), "pid", None))
        self.pid = self.kernel_pid = None
        if self._on_kernel:
            self._on_kernel(None)
        await self._release(procs)
        if self._log is not None:
            self._log.close()
        if self.uid is not None:
            from asynclab.grading import sandbox

            sandbox.UIDS.give_back(self.uid)
            self.uid = None

    async def _release(self, procs: list[psutil.Process]) -> None:
        """Once ``procs`` (killed) are gone, close the client's channels and free the kernel
        manager's sockets and files; never raises."""
        with contextlib.suppress(Exception):
            await asyncio.to_thread(wait_dead, procs, 3)
            await self._reaped(timeout=2)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                if self.client.kc is not None:
                    self.client.kc.stop_channels()
                await self.km.shutdown_kernel(now=True)
        with contextlib.suppress(Exception):
            pending = self.km.cleanup_resources()
            if inspect.isawaitable(pending):
                await pending

    async def _reaped(self, timeout: float) -> None:
        """Wait until jupyter_client can see that the killed kernel has exited.

        Its shutdown polls every 0.1 s, and its first poll nearly always comes too early: a
        killed process whose main thread is already a zombie (what ``wait_dead`` waits for)
        is reported by ``waitpid`` only once its other threads have exited too, a few
        milliseconds later. Polling here, finely, saves most of that 0.1 s per kernel.
        """
        provisioner = self.km.provisioner
        deadline = time.monotonic() + timeout
        while (provisioner is not None and await provisioner.poll() is None
               and time.monotonic() < deadline):
            await asyncio.sleep(0.002)

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            text = (self.workdir / "kernel.log").read_text(errors="replace")
            interesting = [ln for ln in text.splitlines()
                           if ln.strip() and "without encryption" not in ln]
            return "\n".join(interesting[-lines:])
        return ""
