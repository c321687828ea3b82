"""Drive a real JupyterLab in Debian's Chromium, the way a learner does.

Helpers for tests/browser/: start JupyterLab (as ``make lab`` configures it) on a temporary
copy of the course's notebooks, launch Chromium through Playwright, open notebooks, run cells
from the menus and the keyboard, type into the editor, read what the page shows.

Selectors are JupyterLab 4's and ipywidgets 8's DOM classes; everything is read from the page
(``textContent``, ``naturalWidth``), never from JupyterLab's internals.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
OVERRIDES = ROOT / "jupyter" / "overrides.json"

# What Chromium is started with: headless, no sandbox (root in containers), no GPU, and nothing
# that phones home (QUIC, background networking, component updates, sync).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# The notebook in the main area that is showing (JupyterLab hides the other tabs).
NB = "#jp-main-dock-panel .jp-NotebookPanel:not(.lm-mod-hidden)"
PROMPT_DONE = re.compile(r"^\[\d+\]:?$")


def chromium_path() -> str | None:
    """The binary named by ASYNCLAB_CHROMIUM if set, else Debian's Chromium, if there is one."""
    named = os.environ.get("ASYNCLAB_CHROMIUM")
    candidates = [named] if named else [shutil.which("chromium"), shutil.which("chromium-browser")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    return None


def jupyter_executable() -> Path:
    """The course environment's ``jupyter`` (the one ``make lab`` runs)."""
    venv = ROOT / ".venv" / "bin" / "jupyter"
    if venv.exists():
        return venv
    return Path(sys.executable).parent / "jupyter"


def settings_overrides_path(jupyter: Path) -> Path:
    """Where JupyterLab reads the environment's settings overrides from."""
    return jupyter.parent.parent / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_course(dest: Path) -> Path:
    """A throwaway copy of the learner-facing folders: running notebooks never touches the repo."""
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    for folder in ("notebooks", "exercises"):
        if (ROOT / folder).exists():
            shutil.copytree(ROOT / folder, dest / folder, ignore=ignore)
    return dest


@dataclass
class Lab:
    """A running JupyterLab server serving a temporary copy of the course."""

    root: Path
    port: int
    token: str
    process: subprocess.Popen
    log: Path
    started_in: float = 0.0
    base: str = field(init=False)

    def __post_init__(self) -> None:
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        """A notebook's page; path "" is the server's front door, which (as ``make lab``
        configures it) redirects to the course index."""
        tree = f"/lab/tree/{path}" if path else "/"
        return f"{self.base}{tree}?token={self.token}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_lab(workdir: Path, timeout_s: float = 90.0) -> Lab:
    """Start ``jupyter lab`` as ``make lab`` does, on a free port with a token, no browser.

    The server serves ``workdir/course`` (a copy of notebooks/ and exercises/); its runtime,
    config, data, user-settings and workspace folders are private to this server, so that
    parallel servers (pytest-xdist) share nothing but the environment's settings overrides.
    """
    course = copy_course(workdir / "course")
    port, token = free_port(), secrets.token_hex(16)
    jupyter = jupyter_executable()
    env = dict(os.environ)
    for name, sub in (("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_CONFIG_DIR", "config"),
                      ("JUPYTER_DATA_DIR", "data"), ("IPYTHONDIR", "ipython")):
        env[name] = str(workdir / sub)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    # The server must not pick up pytest's own environment tweaks for kernels.
    env.pop("PYTEST_XDIST_WORKER", None)
    argv = [
        str(jupyter), "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={course}",
        "--LabApp.default_url=/lab/tree/notebooks/00_index.ipynb",
        f"--LabApp.user_settings_dir={workdir / 'user-settings'}",
        f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
    ]
    if os.geteuid() == 0:
        argv.append("--allow-root")  # as make lab does when run as root
    log = workdir / "jupyterlab.log"
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=course, env=env, stdout=log.open("w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    lab = Lab(course, port, token, process, log)
    deadline = started + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{lab.log_tail()}")
        try:
            request = urllib.request.Request(f"{lab.base}/api/status",
                                             headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(request, timeout=2) as answer:
                if answer.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            lab.stop()
            raise RuntimeError(f"JupyterLab did not answer within {timeout_s:g} s:\n"
                               f"{lab.log_tail()}")
        time.sleep(0.25)
    lab.started_in = time.monotonic() - started
    return lab


def launch_chromium(playwright, executable: str):
    """A Chromium browser context with a fresh profile (user data dir) of its own."""
    profile = tempfile.mkdtemp(prefix="asynclab-chromium-")
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 800}, device_scale_factor=1)
    context.set_default_timeout(60_000)
    context._asynclab_profile = profile  # removed by the fixture that made it
    return context


# ---------------------------------------------------------------------------- reading the page

STATE_JS = """(sel) => {
  const panel = document.querySelector(sel);
  if (!panel) return null;
  const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell')];
  return {
    status: panel.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status ?? null,
    cells: cells.map(c => ({
      code: c.classList.contains('jp-CodeCell'),
      prompt: (c.querySelector('.jp-InputArea-prompt')?.textContent ?? '').trim(),
      outputs: [...c.querySelectorAll('.jp-OutputArea-output')].map(o => ({
        mime: o.dataset.mimeType ?? null, text: o.textContent.slice(0, 3000)})),
      imgs: [...c.querySelectorAll('.jp-OutputArea-output img')].map(i => ({
        src: i.getAttribute('src') ? i.getAttribute('src').slice(0, 120) : '',
        loaded: i.complete && i.naturalWidth > 0})),
      widgets: c.querySelectorAll('.jupyter-widgets').length,
      widgetError: c.textContent.includes('Error displaying widget'),
    })),
  };
}"""


def notebook_state(page) -> dict | None:
    return page.evaluate(STATE_JS, NB)


@dataclass
class CellPlan:
    """What the committed notebook says about one cell (the page is judged against it)."""

    index: int
    code: bool
    source: str
    tags: list[str]
    errors_expected: bool   # tagged raises-exception, or committed with an error/stderr output
    has_image: bool
    has_widget: bool


def plan(path: Path) -> list[CellPlan]:
    nb = nbformat.read(path, as_version=4)
    cells = []
    for index, cell in enumerate(nb.cells):
        outputs = cell.get("outputs", []) if cell.cell_type == "code" else []
        tags = list(cell.get("metadata", {}).get("tags", []))
        errors = "raises-exception" in tags or any(
            o.output_type == "error" or (o.output_type == "stream" and o.name == "stderr")
            for o in outputs)
        data = [o.get("data", {}) for o in outputs]
        cells.append(CellPlan(
            index=index, code=cell.cell_type == "code", source=cell.source, tags=tags,
            errors_expected=errors,
            has_image=any(k.startswith("image/") for d in data for k in d),
            has_widget=any("application/vnd.jupyter.widget-view+json" in d for d in data)))
    return cells


def unexpected_errors(state: dict, cells: list[CellPlan]) -> list[str]:
    """Error or stderr output in a cell whose committed version has none."""
    found = []
    for cell, seen in zip(cells, state["cells"]):
        if not cell.code or cell.errors_expected:
            continue
        for output in seen["outputs"]:
            if output["mime"] == "application/vnd.jupyter.stderr":
                found.append(f"cell {cell.index}: {output['text'][:1500]}")
    return found


# ------------------------------------------------------------------------------- acting on it

def open_notebook(page, lab: Lab, path: str) -> None:
    """Open ``path`` (relative to the course root) in JupyterLab and wait for its kernel."""
    page.goto(lab.url(path))
    wait_for_notebook(page, Path(path).name)


def wait_for_notebook(page, name: str, timeout_s: float = 60.0) -> None:
    page.locator(f".lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel:text-is('{name}')") \
        .wait_for(timeout=timeout_s * 1000)
    page.locator(f"{NB} .jp-Notebook .jp-Cell").first.wait_for(timeout=timeout_s * 1000)
    wait_for_kernel(page, timeout_s)


def wait_for_kernel(page, timeout_s: float = 60.0) -> None:
    """Wait until the status bar says the notebook's kernel is connected and idle.

    A cell run before that (the kernel still starting, as on a loaded machine) is not run at
    all: JupyterLab clears its prompt and moves on.
    """
    page.wait_for_function(
        """(sel) => {
             const status = document.querySelector('#jp-main-statusbar');
             const panel = document.querySelector(sel);
             const items = status ? [...status.querySelectorAll('.jp-StatusBar-TextItem')] : [];
             return panel && items.some(e => /\\| Idle$/.test(e.textContent.trim()))
               && panel.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle';
           }""", arg=NB, timeout=timeout_s * 1000)


def menu(page, top: str, item: str) -> None:
    """Click a main-menu entry, e.g. menu(page, "Run", "Run All Cells")."""
    page.locator(f"#jp-menu-panel .lm-MenuBar-itemLabel:text-is('{top}')").click()
    page.locator(f".lm-Menu .lm-Menu-itemLabel:text-is('{item}')").click()


def wait_for_all_cells(page, cells: list[CellPlan], timeout_s: float = 60.0) -> None:
    """Wait until the page shows every cell of the notebook (JupyterLab attaches them lazily)."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = notebook_state(page)
        if state and len(state["cells"]) == len(cells):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the page shows {len(state['cells']) if state else 0} cells, "
                                 f"the notebook has {len(cells)}")
        page.wait_for_timeout(200)


def wait_for_run(page, cells: list[CellPlan], timeout_s: float = 90.0) -> dict:
    """Wait until every non-empty code cell has run, its pictures loaded and widgets drawn.

    Fails at once (with the traceback the page shows) when a cell shows an error it should not.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        state = notebook_state(page)
        errors = unexpected_errors(state, cells)
        if errors:
            raise AssertionError("unexpected error output:\n" + "\n".join(errors))
        pending = []
        for cell, seen in zip(cells, state["cells"]):
            if not cell.code or not cell.source.strip():
                continue
            if not PROMPT_DONE.match(seen["prompt"]):
                pending.append(f"cell {cell.index} prompt {seen['prompt']!r}")
            elif not all(img["loaded"] for img in seen["imgs"]):
                pending.append(f"cell {cell.index}: a picture is still loading")
            elif cell.has_widget and not seen["widgets"] and not seen["widgetError"]:
                pending.append(f"cell {cell.index}: its widget is not drawn yet")
        if not pending and state["status"] == "idle":
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"the notebook did not finish within {timeout_s:g} s: "
                                 + "; ".join(pending[:5]) + f" (kernel {state['status']})")
        page.wait_for_timeout(250)


def prompt_number(prompt: str) -> int:
    """The execution count a prompt shows ("[3]:" -> 3), or 0 (not run, queued or running)."""
    return int(prompt.strip("[]: ")) if PROMPT_DONE.match(prompt) else 0


def cell(page, index: int):
    return page.locator(f"{NB} .jp-Notebook .jp-Cell").nth(index)


def is_active(page, index: int) -> bool:
    return cell(page, index).evaluate("e => e.classList.contains('jp-mod-active')")


def select_cell(page, index: int, part: str = ".jp-InputPrompt") -> None:
    """Click a cell (its prompt column: command mode; its editor: edit mode), as a learner does.

    While JupyterLab is still laying cells out (they are attached lazily), the page can shift
    under the pointer: the click is repeated until the cell it aimed at is the active one.
    """
    for _ in range(10):
        target = cell(page, index)
        target.scroll_into_view_if_needed()
        target.locator(part).first.click()
        if is_active(page, index):
            return
        page.wait_for_timeout(300)
    raise AssertionError(f"could not select cell {index}")


def run_cell(page, index: int, timeout_s: float = 60.0) -> dict:
    """Select a code cell, press Shift+Enter, wait until it has run; return its state."""
    wait_for_kernel(page, timeout_s)
    select_cell(page, index)
    # Execution counts only grow in a kernel: the cell has run when its count is above every
    # count on the page before (clear the committed outputs first, whose counts are stale).
    before = max(prompt_number(c["prompt"]) for c in notebook_state(page)["cells"])
    page.keyboard.press("Shift+Enter")
    pressed = time.monotonic()
    deadline = pressed + timeout_s
    retries = 2
    while True:
        state = notebook_state(page)
        seen = state["cells"][index]
        if prompt_number(seen["prompt"]) > before and state["status"] == "idle":
            return seen
        started = seen["prompt"].startswith("[*]") or prompt_number(seen["prompt"]) > before
        if (not started and retries and state["status"] == "idle"
                and time.monotonic() - pressed > 5):
            # Nothing happened (the key press was lost, or the kernel was not ready): a learner
            # would press Shift+Enter again. A cell that ran shows a new count, so none runs twice.
            retries -= 1
            wait_for_kernel(page, timeout_s)
            select_cell(page, index)
            page.keyboard.press("Shift+Enter")
            pressed = time.monotonic()
        if time.monotonic() > deadline:
            screenshot(page, f"failed-run-cell-{index}")
            raise AssertionError(f"cell {index} did not run within {timeout_s:g} s "
                                 f"(prompt {seen['prompt']!r}, kernel {state['status']})")
        page.wait_for_timeout(150)


def editor_text(page, index: int) -> str:
    """The code in a cell's editor, line by line as CodeMirror shows it."""
    return page.evaluate(
        """([sel, i]) => [...document.querySelectorAll(sel + ' .jp-Notebook .jp-Cell')[i]
              .querySelectorAll('.cm-content .cm-line')].map(l => l.textContent).join('\\n')""",
        [NB, index])


def type_code(page, index: int, code: str) -> None:
    """Replace a cell's code by typing it into CodeMirror, key by key.

    The editor indents after Enter (and may close brackets): so each line is typed over a
    selection of whatever indentation the editor proposed (Shift+Home selects it; typing
    replaces it), with the line's own indentation; a closing bracket typed where the editor
    already closed one steps over it.
    """
    select_cell(page, index, ".cm-content")
    page.locator(f"{NB} .jp-Notebook.jp-mod-editMode").wait_for(state="attached")
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    for number, line in enumerate(code.splitlines()):
        if number:
            page.keyboard.press("Enter")
            page.keyboard.press("Shift+Home")
        if line.strip():
            page.keyboard.type(line)
        else:
            # A blank line: remove the indentation the editor proposed.
            page.keyboard.type(" ")
            page.keyboard.press("Shift+Home")
            page.keyboard.press("Backspace")
    page.keyboard.press("Escape")  # back to command mode


def screenshot(page, name: str, *, locator=None, block: str = "center") -> Path:
    """Save what the learner sees as build/screenshots/NAME.png (git-ignored).

    With a locator, the notebook is first scrolled to show it (``block``: where in the view).
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if locator is not None:
        locator.evaluate("(el, block) => el.scrollIntoView({block})", block)
        page.wait_for_timeout(300)
    page.screenshot(path=str(path))
    return path


def overrides_installed(jupyter: Path) -> tuple[bool, str]:
    """Whether the environment carries the course's settings overrides (``make venv`` copies them)."""
    installed = settings_overrides_path(jupyter)
    if not installed.exists():
        return False, f"{installed} is missing: run make venv (it copies jupyter/overrides.json)"
    if json.loads(installed.read_text()) != json.loads(OVERRIDES.read_text()):
        return False, f"{installed} differs from jupyter/overrides.json: run make venv"
    return True, ""
