"""Execute notebooks in place from a fresh kernel, as they must be committed.

    .venv/bin/python scripts/execute_notebooks.py notebooks/01_event_loop.ipynb solutions/05_semaphore.ipynb

Each notebook runs in its own folder (so relative paths work as in JupyterLab),
gets the course's kernelspec metadata, and is written back with its outputs.
After any solution notebook, run `make exercises`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    nbformat.write(nb, path)
    print(f"executed {path}")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        execute(Path(arg))
