"""Warm kernels: a fork server whose children join a fresh sandbox each and become kernels.

A cold grading kernel spends most of its second of CPU on the same work every time: a new
Python, ipykernel, IPython, matplotlib and the course package imported again. The zygote
does that work once. For each notebook:

1. the grader makes the notebook's sandbox with bubblewrap as before (``sandbox.bwrap_argv``),
   with a placeholder process in it (``sleep``) instead of the kernel;
2. it asks the zygote (``Zygote.spawn``) for a kernel in that sandbox. The zygote forks; the
   child enters the sandbox's namespaces (``setns``: user, IPC, UTS, network, cgroup, PID,
   mount) and forks again, so that the kernel is a process *of* the sandbox's PID namespace;
3. the kernel, before any notebook code runs: starts a session of its own, lowers its limits
   (``kernel.apply_limits``), gives up every privilege (as root: its sandbox's own user id, as
   the kernel launcher does; otherwise: all capabilities of the sandbox's user namespace, and
   no new ones ever), takes the sandbox's environment and working folder, closes every file
   the zygote had open, and starts ipykernel with its connection file.

What each notebook still gets, as with a cold kernel: a kernel nobody used before (every
kernel is forked from the zygote, which never runs notebook code, not from a previous
kernel: a learner's globals, patched modules and threads die with their own kernel); the
sandbox's file system, network, PID namespace and user; the same limits. Killing the sandbox
ends the kernel too: when a PID namespace's first process dies, Linux kills every process in it.

Without a sandbox (``grade --no-sandbox``) a second zygote, started with the grader's own
environment, forks kernels where it is: the same limits as a cold unsandboxed kernel, no
namespaces and no change of user.

The zygote itself holds nothing secret (it never sees the class secret or a submission: only
the paths of a run folder and a log), runs in a session of its own, and exits when the grader
closes its stdin or dies.

Protocol: one JSON object per line on stdin, one JSON answer per line on stdout.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

__all__ = ["Zygote", "NoWarmKernel", "PRELOAD", "provisioner_class", "zygote", "placeholder_argv"]

# What every grading kernel imports (ipykernel, and what it loads as it starts; the course
# package, whose judge draws with matplotlib), imported once in the zygote before it says it is
# ready. Host-only modules (nbformat, nbclient, the grader) stay out.
PRELOAD = (
    "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.debugger", "IPython",
    "IPython.core.completerlib", "IPython.core.debugger", "IPython.core.oinspect",
    "IPython.extensions.storemagic", "IPython.utils.wildcard", "code", "faulthandler", "sqlite3",
    "tornado.platform.asyncio", "matplotlib", "matplotlib.figure",
    "matplotlib.font_manager", "matplotlib.backends.backend_agg", "matplotlib_inline.backend_inline",
    "asynclab", "asynclab.timeline", "asynclab.plotting", "asynclab.vtime", "asynclab.fakes",
    "asynclab.checking", "asynclab.checks", "asynclab.grading.guard", "asynclab.grading.kernel",
)
NAMESPACES = ("user", "ipc", "uts", "net", "cgroup", "pid", "mnt")  # user first, mount last
PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _later_modules() -> list[str]:
    """The check modules: each kernel needs one, so they are imported while no request waits
    (a kernel forked before its module is in imports it itself)."""
    from asynclab.checks import notebook_stems

    return [f"asynclab.checks.nb{stem}" for stem in notebook_stems()]


# -- in the zygote's children ----------------------------------------------------------------
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _enter(target_pid: int, libc: Any) -> None:
    """Join every namespace of process ``target_pid`` that this process is not already in."""
    fds = []
    for ns in NAMESPACES:
        path = f"/proc/{target_pid}/ns/{ns}"
        try:
            if os.readlink(path) == os.readlink(f"/proc/self/ns/{ns}"):
                continue
            fds.append((ns, os.open(path, os.O_RDONLY)))
        except FileNotFoundError:  # a kernel without cgroup namespaces
            continue
    for ns, fd in fds:  # opened first: once in the PID or mount namespace, /proc differs
        if libc.setns(fd, 0) != 0:
            raise OSError(ctypes.get_errno(), f"cannot enter the sandbox's {ns} namespace")
        os.close(fd)


def _drop_capabilities(libc: Any) -> None:
    """Give up every capability (those a joined user namespace grants its creator's user)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header, data = Header(_LINUX_CAPABILITY_VERSION_3, 0), (Data * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "cannot drop capabilities")


def _become_kernel(request: dict[str, Any], libc: Any) -> None:
    """In the sandbox now: drop everything the kernel must not have, then run ipykernel."""
    from asynclab.grading import kernel

    os.setsid()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    os.chdir(request["cwd"])
    sandboxed = request.get("target_pid") is not None
    if sandboxed and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot set no_new_privs")
    limits = request["limits"]
    kernel.apply_limits(limits.get("memory_mb"), limits.get("file_mb", kernel.DEFAULT_FILE_MB),
                        limits.get("max_processes"), limits.get("cpu_s"))
    connection_file = request["connection_file"]
    if request.get("run_as") is not None:  # a root grader: the sandbox's own user
        connection_file = kernel.become(request["run_as"], connection_file, "/tmp/home/kernel.json")
    elif sandboxed:  # an unprivileged grader: the capabilities the joined user namespace gave
        _drop_capabilities(libc)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [sys.argv[0], "-f", connection_file, *request["kernel_args"]]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


def _spawn(request: dict[str, Any]) -> int:
    """Fork a kernel into the sandbox of ``request["target_pid"]``; returns its PID (host's)."""
    report_r, report_w = os.pipe()
    child = os.fork()
    if child:
        os.close(report_w)
        with os.fdopen(report_r, "rb") as report:
            answer = report.read()
        if not answer.startswith(b"pid "):
            raise RuntimeError(answer.decode(errors="replace") or "the kernel's parent died")
        return int(answer.split()[1])
    # The intermediate process: outside the sandbox's PID namespace, it waits for the kernel.
    try:
        os.close(report_r)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, report_w)
        os.closerange(report_w + 1, 1 << 16)
        libc = _libc()
        if request.get("target_pid") is not None:  # None: no sandbox (grade --no-sandbox)
            _enter(int(request["target_pid"]), libc)
        kernel_pid = os.fork()
        if kernel_pid == 0:
            try:
                os.close(report_w)
                _become_kernel(request, libc)
            except BaseException as exc:  # noqa: BLE001 - said in the kernel's log
                print(f"asynclab.grading.zygote: the kernel could not start: {exc!r}",
                      file=sys.stderr, flush=True)
                os._exit(1)
            os._exit(0)
        os.write(report_w, f"pid {kernel_pid}".encode())
        os.close(report_w)
        _, status = os.waitpid(kernel_pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    except BaseException as exc:  # noqa: BLE001
        with open(report_w, "wb", closefd=True) as report:
            report.write(f"{type(exc).__name__}: {exc}".encode())
        os._exit(1)


def _requests(later: list[str]) -> Any:
    """The request lines on stdin, as they come; while none waits, import the next of
    ``later``. Read straight from the file descriptor, so that select() tells the truth."""
    import select

    pending = b""
    while True:
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line
        if later and not select.select([0], [], [], 0)[0]:
            with contextlib.suppress(Exception):  # a module that fails is the kernel's to report
                importlib.import_module(later.pop(0))
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return
        pending += chunk


def _reap() -> None:
    """Collect the intermediate processes of kernels that have ended."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(later: bool = True) -> None:
    """The zygote's loop: preload, then one kernel per request line, until stdin closes.
    ``later``: import the check modules while no request waits (not worth it for a few
    notebooks: each kernel imports only its own)."""
    # It ends when the grader closes its stdin, or dies (no PR_SET_PDEATHSIG: that follows the
    # thread that started it, and a grader starts it from any of its threads).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # As the kernel launcher does: the folder it was started in is not an import location.
    if sys.path and sys.path[0] in ("", ".", os.getcwd()):
        del sys.path[0]
    from asynclab.grading.kernel import without_debugger

    without_debugger()  # as a cold grading kernel
    for name in PRELOAD:
        importlib.import_module(name)
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in _requests(_later_modules() if later else []):
        _reap()
        try:
            answer = {"pid": _spawn(json.loads(line))}
        except Exception as exc:  # noqa: BLE001 - the grader says it, and falls back
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


# -- in the grader ---------------------------------------------------------------------------
class NoWarmKernel(RuntimeError):
    """The zygote could not make a kernel: it would not start, died, or failed to fork. Never
    the notebook's doing (no notebook code runs before the kernel exists): the grader starts a
    cold kernel instead."""


class Zygote:
    """The grader's handle on one zygote process; thread-safe; started on first use."""

    def __init__(self, env: dict[str, str], later: bool = True) -> None:
        """``later``: it imports every check module while idle (``serve``)."""
        self._env = env
        self._later = later
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._failed: str | None = None  # why it could not start: it is not tried again

    def _started(self) -> subprocess.Popen:
        """The zygote process, started now unless it is running (call with ``_lock`` held)."""
        if self._failed is not None:
            raise NoWarmKernel(self._failed)
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        return self._proc

    def _start(self) -> subprocess.Popen:
        with tempfile.TemporaryFile() as errors:
            argv = [sys.executable, "-m", "asynclab.grading.zygote",
                    *([] if self._later else ["--no-later"])]
            proc = subprocess.Popen(argv,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=errors, env=self._env, cwd="/",
                                    start_new_session=True, text=True)
            ready = proc.stdout.readline() if proc.stdout else ""
            if ready.startswith('{"ready"'):
                return proc
            proc.kill()
            proc.wait()
            errors.seek(0)
            said = [ln for ln in errors.read().decode(errors="replace").splitlines() if ln.strip()]
        self._failed = ("warm kernels: the zygote did not start"
                        + (f" ({said[-1].strip()})" if said else ""))
        raise NoWarmKernel(self._failed)

    def warm_up(self) -> None:
        """Start the zygote now, in a thread of its own, so that its imports overlap the
        grader's own work; ``spawn`` waits for it."""
        def start() -> None:
            with self._lock, contextlib.suppress(Exception):  # spawn retries, and says why
                self._started()

        threading.Thread(target=start, name="asynclab zygote start", daemon=True).start()

    def spawn(self, request: dict[str, Any]) -> int:
        """A kernel in the sandbox of ``request["target_pid"]``; returns its PID."""
        with self._lock:
            try:
                proc = self._started()
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
                answer = json.loads(proc.stdout.readline() or '{"error": "the zygote died"}')
            except NoWarmKernel:
                raise
            except (OSError, ValueError) as exc:  # it died: the next call starts a new one
                with contextlib.suppress(Exception):
                    if self._proc is not None:
                        self._proc.kill()
                self._proc = None
                raise NoWarmKernel(f"warm kernels: {type(exc).__name__}: {exc}") from None
        if "error" in answer:
            raise NoWarmKernel(f"warm kernels: {answer['error']}")
        return int(answer["pid"])

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                with contextlib.suppress(Exception):
                    self._proc.kill()
                    self._proc.wait(timeout=5)
                self._proc = None


def say_cold(reason: NoWarmKernel) -> None:
    """Tell whoever runs the grader, once per process and reason, that kernels start cold."""
    if str(reason) not in _SAID:
        _SAID.add(str(reason))
        logging.getLogger("asynclab.grading").warning(
            "%s; kernels start cold instead (slower, with the same verdicts)", reason)


_SAID: set[str] = set()
_ZYGOTES: dict[tuple[int, bool], Zygote] = {}
_ZYGOTES_LOCK = threading.Lock()


def zygote(sandboxed: bool = True, later: bool = True) -> Zygote:
    """This grader process's zygote for sandboxed kernels, or for unsandboxed ones (their
    environments differ: the sandbox's, or the grader's own). One per process: a fork copies
    none of it. ``later`` (see ``Zygote``) counts when this call makes it."""
    key = (os.getpid(), sandboxed)
    with _ZYGOTES_LOCK:
        found = _ZYGOTES.get(key)
        if found is None:
            if sandboxed:
                from asynclab.grading import sandbox

                env = sandbox.kernel_env()
                cache = sandbox.matplotlib_cache_dir()
                if cache is not None:
                    env["MPLCONFIGDIR"] = str(cache)
            else:
                from asynclab.grading.kernel import host_kernel_env

                env = host_kernel_env()
            found = _ZYGOTES[key] = Zygote(env, later)
        return found


def close() -> None:
    """Stop this process's zygotes (kernels they made live on, each in its own session)."""
    with _ZYGOTES_LOCK:
        mine = [key for key in _ZYGOTES if key[0] == os.getpid()]
        found = [_ZYGOTES.pop(key) for key in mine]
    for each in found:
        each.close()


def placeholder_argv() -> list[str]:
    """What the sandbox runs until a kernel joins it: nothing at all, for ever."""
    import shutil

    return [shutil.which("sleep") or "/bin/sleep", "infinity"]


@functools.lru_cache(maxsize=2)
def provisioner_class(sandboxed: bool = True) -> type:
    """The jupyter_client provisioner of warm kernels, in a sandbox or not."""
    from jupyter_client.provisioning import LocalProvisioner

    class WarmProvisioner(LocalProvisioner):  # type: ignore[misc, valid-type]
        """Starts the sandbox (its argv ends with ``placeholder_argv()``), then has the zygote
        fork a kernel into it. The kernel counts as alive while both are; ``kernel_pid`` is the
        kernel's own process (not a descendant of ``pid``, the sandbox's)."""

        request: dict[str, Any] = {}
        kernel_pid: int | None = None
        _kernel: Any = None

        async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
            import asyncio

            import psutil

            info = await super().launch_kernel(cmd, **kwargs)
            target = await _placeholder_pid(self.pid)
            request = {**self.request, "target_pid": target,
                       "connection_file": self.parent.connection_file}
            self.kernel_pid = await asyncio.to_thread(zygote().spawn, request)
            self._kernel = psutil.Process(self.kernel_pid)
            return info

        async def poll(self) -> int | None:
            ret = await super().poll()
            if ret is None and self._kernel is not None and not _alive(self._kernel):
                with contextlib.suppress(Exception):
                    self.process.kill()  # the sandbox has nothing left to hold
                return -signal.SIGKILL
            return ret

    class UnsandboxedWarmProvisioner(LocalProvisioner):  # type: ignore[misc, valid-type]
        """Has the zygote fork a kernel (no sandbox): ``process`` and ``pid`` are the kernel's."""

        request: dict[str, Any] = {}
        kernel_pid: int | None = None

        async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
            import asyncio

            request = {**self.request, "target_pid": None,
                       "connection_file": self.parent.connection_file}
            self.kernel_pid = await asyncio.to_thread(zygote(sandboxed=False).spawn, request)
            self.process = _NotAChild(self.kernel_pid)
            self.pid = self.pgid = self.kernel_pid  # it is the leader of its own session
            self.cwd = kwargs.get("cwd")
            return self.connection_info

    return WarmProvisioner if sandboxed else UnsandboxedWarmProvisioner


class _NotAChild:
    """What jupyter_client asks of a kernel's ``Popen``, for a process that is not our child."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        import psutil

        self.pid = pid
        self._proc = psutil.Process(pid)

    def poll(self) -> int | None:
        return None if _alive(self._proc) else -signal.SIGKILL

    def wait(self, timeout: float | None = None) -> int:
        import psutil

        with contextlib.suppress(psutil.Error):
            self._proc.wait(timeout)
        return -signal.SIGKILL

    def send_signal(self, signum: int) -> None:
        import psutil

        with contextlib.suppress(psutil.Error):
            if _alive(self._proc):
                self._proc.send_signal(signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _alive(proc: Any) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def _placeholder_pid(sandbox_pid: int, timeout: float = 30.0) -> int:
    """The PID (host's) of the sandbox's placeholder, once bubblewrap has started it."""
    import asyncio
    import time

    import psutil

    name = Path(placeholder_argv()[0]).name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process(sandbox_pid).children(recursive=True):
                if proc.name() == name:
                    return proc.pid
        await asyncio.sleep(0.002)
    raise RuntimeError("the sandbox did not start its placeholder")


if __name__ == "__main__":
    serve(later="--no-later" not in sys.argv[1:])
