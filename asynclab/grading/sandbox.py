"""The sandbox every grading kernel starts in: Linux namespaces made by bubblewrap (``bwrap``).

``asynclab grade`` treats learner code as hostile. Each notebook's kernel is started as::

    bwrap <the options below> -- python -m asynclab.grading.kernel ... -f CONNECTION_FILE

and so it gets, one sandbox per kernel:

* **its own PID namespace** (``--unshare-pid``), with ``--die-with-parent``: the learner sees
  only the kernel's own processes, cannot signal the grader or another learner's kernel, and
  nothing it starts (a double fork, ``start_new_session=True``) outlives the sandbox: when the
  grader kills the sandbox's first process, the kernel ends the whole namespace;
* **its own view of the file system** (a new mount namespace): the Python environment, the
  system's libraries and the course package are mounted read-only; ``/tmp`` is a fresh tmpfs of
  bounded size, which is also the kernel's working folder; the only host folder it can write
  is its own ``run`` folder (the kernel's sockets, its connection file and the verdicts the
  judge writes). Nothing else of the host is there: not SUBMISSIONS, not OUT, not the course's
  ``solutions/``, not the home folder, not ``/etc`` beyond what the dynamic linker and fonts
  need;
* **its own network namespace**, with loopback only: a server the notebook starts on
  127.0.0.1 works (lessons 12 and 13), the host's 127.0.0.1 and the outside world are unreachable.
  The kernel talks to the grader over jupyter_client's ``ipc`` transport: Unix sockets in the
  ``run`` folder, the one thing that must cross;
* **its own user**, with no capabilities: as root, the grader gives each sandbox a user id of
  its own (``sandbox_uid``) that the kernel switches to before any notebook code runs; as an
  ordinary user, bubblewrap makes a user namespace. Either way the kernel's limits on
  processes and threads (``RLIMIT_NPROC``: a fork bomb fails inside its own sandbox), CPU time,
  memory and file size (see ``asynclab.grading.kernel``) count for this sandbox alone.

Where no sandbox can be made (not Linux, no ``bwrap``, user namespaces turned off),
``unavailable()`` says why and how to enable it; ``asynclab grade`` then stops unless it is
run with ``--no-sandbox``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SandboxSpec", "unavailable", "bwrap_argv", "kernel_env", "UidPool"]

TMP_SIZE_MB = 256
# Files of /etc that the dynamic linker, name lookup of "localhost" and fonts read.
ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "fonts", "localtime", "hosts",
               "nsswitch.conf", "host.conf", "gai.conf")
# Top-level system folders: bound read-only, or recreated as the same symlink (/lib -> usr/lib).
SYSTEM_ROOTS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Each sandbox of a root grader runs as uid UID_BASE + pid * UIDS_PER_GRADER + slot: no two
# sandboxes alive at once share a user id, even across graders, so per-user limits
# (RLIMIT_NPROC) count one sandbox each.
UID_BASE = 1_000_000
UIDS_PER_GRADER = 256

HOW_TO_ENABLE = {
    "platform": "grading in a sandbox needs Linux (namespaces); on macOS or Windows run the "
                "grader in a Linux container or VM",
    "bwrap": "install bubblewrap: sudo apt-get install bubblewrap (Debian, Ubuntu), "
             "sudo dnf install bubblewrap (Fedora), or your distribution's package",
    "userns": "allow user namespaces: sudo sysctl -w kernel.unprivileged_userns_clone=1 "
              "(older Debian), sudo sysctl -w user.max_user_namespaces=15000, or on Ubuntu "
              "24.04+ sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0; or run "
              "the grader as root",
}


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _bwrap() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def _python_roots() -> list[Path]:
    """Folders the kernel's Python needs: the environment, its base installation, the course
    package (the package's folder only: not the course's checkout around it)."""
    import asynclab

    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  *sysconfig.get_paths().values(), Path(asynclab.__file__).parent,
                  Path(sys.executable).resolve().parent.parent]  # pyenv, Homebrew symlinks
    candidates += [entry for entry in sys.path  # site-packages outside the prefixes (user site)
                   if entry and Path(entry).name in ("site-packages", "dist-packages")]
    paths = sorted({Path(c).resolve() for c in candidates if Path(c).exists()})
    return [p for p in paths if not any(other in p.parents for other in paths)]


@functools.lru_cache(maxsize=1)
def _font_cache() -> Path | None:
    """matplotlib's font list, built once on the host, so that kernels do not rebuild it."""
    try:
        from matplotlib import font_manager, get_cachedir

        font_manager.fontManager  # noqa: B018 - builds and saves the list when missing
        path = Path(get_cachedir()) / f"fontlist-v{font_manager.FontManager.__version__}.json"
    except Exception:  # noqa: BLE001 - without it a kernel builds its own, slower
        return None
    return path if path.is_file() else None


def matplotlib_cache_dir() -> Path | None:
    """The host folder of matplotlib's font list (warm kernels' zygote reads it there)."""
    fonts = _font_cache()
    return fonts.parent if fonts is not None else None


@dataclass(frozen=True)
class SandboxSpec:
    """How one sandbox is made: the folder it may write and the user it runs as."""

    run_dir: Path  # host folder bound read-write at the same path: the kernel's sockets
    shared: tuple[Path, ...] = ()  # other host folders it writes (the judge's verdicts)
    tmp_size_mb: int = TMP_SIZE_MB
    warm: bool = False  # a warm kernel joins it: matplotlib's host folder is there, read-only


def bwrap_argv(spec: SandboxSpec) -> list[str]:
    """The ``bwrap`` command line up to (and including) ``--``; the kernel's argv follows."""
    bwrap = _bwrap()
    if bwrap is None:
        raise RuntimeError(unavailable() or "bwrap not found")
    argv = [bwrap, "--die-with-parent", "--new-session",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox"]
    if _running_as_root():
        # No user namespace (it would map the sandbox to uid 0, which per-user limits exempt):
        # every capability is dropped but the two the kernel needs to become its own user.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    made: set[Path] = {Path("/")}

    def parents(dest: Path) -> list[str]:
        """``--dir`` for each missing parent of ``dest``, readable by the kernel's user (bwrap
        would make them 0700, and the kernel does not run as root)."""
        missing = [p for p in reversed(dest.parents) if p not in made]
        made.update(missing)
        made.add(dest)
        return [arg for p in missing for arg in ("--perms", "0755", "--dir", str(p))]

    def ro_bind(source: Path, dest: Path | None = None) -> list[str]:
        dest = dest or source
        return [*parents(dest), "--ro-bind", str(source), str(dest)]

    # /tmp first: a tmpfs mounted after the binds would hide whatever lives under /tmp (a
    # checkout or a virtual environment in /tmp, as in CI's clean clones).
    argv += ["--proc", "/proc", "--dev", "/dev",
             # The kernel's user owns nothing here: the folders it writes are open to all.
             "--perms", "1777", "--size", str(spec.tmp_size_mb * 1024 * 1024), "--tmpfs", "/tmp"]
    made.update({Path("/proc"), Path("/dev"), Path("/tmp")})
    for folder in ("/tmp/work", "/tmp/home", "/tmp/home/.matplotlib"):
        argv += ["--perms", "0777", "--dir", folder]
        made.add(Path(folder))
    for name in SYSTEM_ROOTS:
        host = Path("/") / name
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            argv += ro_bind(host)
    for name in ETC_ENTRIES:
        if (Path("/etc") / name).exists():
            argv += ro_bind(Path("/etc") / name)
    for root in _python_roots():
        argv += ro_bind(root)
    fonts = _font_cache()
    if fonts is not None:
        argv += ro_bind(fonts, Path("/tmp/home/.matplotlib") / fonts.name)
        if spec.warm:  # the zygote imported matplotlib with its folder there
            argv += ro_bind(fonts.parent)
    for folder in (spec.run_dir, *spec.shared):
        argv += [*parents(folder), "--bind", str(folder), str(folder)]
    argv += ["--chdir", "/tmp/work", "--clearenv"]
    for key, value in kernel_env().items():
        argv += ["--setenv", key, value]
    return [*argv, "--"]


def kernel_env() -> dict[str, str]:
    """The whole environment of a sandboxed kernel: nothing of the grader's (tokens, paths)."""
    from asynclab.grading.kernel import KERNEL_SETTINGS

    bin_dir = str(Path(sys.executable).parent)
    return {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp/home",
            "USER": "learner", "LOGNAME": "learner", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/home/.matplotlib",
            "IPYTHONDIR": "/tmp/home/.ipython", "PYTHONUNBUFFERED": "1", **KERNEL_SETTINGS}


class UidPool:
    """User ids for the sandboxes of this grader process, one per live sandbox (root only)."""

    def __init__(self) -> None:
        self._free = list(range(UIDS_PER_GRADER))
        self._lock = threading.Lock()
        self._base = UID_BASE + os.getpid() * UIDS_PER_GRADER

    def take(self) -> int | None:
        if not _running_as_root():
            return None
        with self._lock:
            if not self._free:
                raise RuntimeError(f"more than {UIDS_PER_GRADER} sandboxes at once")
            return self._base + self._free.pop(0)

    def give_back(self, uid: int | None) -> None:
        if uid is not None:
            with self._lock:
                self._free.append(uid - self._base)


UIDS = UidPool()


@functools.lru_cache(maxsize=1)
def unavailable() -> str | None:
    """Why no sandbox can be made here (with how to enable it), or None when one can."""
    if not sys.platform.startswith("linux"):
        return f"this is {sys.platform}: {HOW_TO_ENABLE['platform']}"
    if _bwrap() is None:
        return f"bubblewrap (bwrap) is not installed: {HOW_TO_ENABLE['bwrap']}"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="asynclab-probe-") as folder:
        argv = bwrap_argv(SandboxSpec(Path(folder)))
        try:
            probe = subprocess.run([*argv, sys.executable, "-c", "import asynclab"],
                                   capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap could not be started ({exc})"
    if probe.returncode != 0:
        detail = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        if "namespace" in detail.lower() or "permission" in detail.lower():
            return f"bwrap cannot make a sandbox here ({detail}): {HOW_TO_ENABLE['userns']}"
        return f"bwrap cannot make a sandbox here ({detail})"
    return None
