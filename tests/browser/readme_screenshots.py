"""Copy a few browser-test screenshots into docs/screenshots/ for the README, made small.

The browser tests save full-size screenshots in build/screenshots/ (git-ignored). Run them,
then this, then commit docs/screenshots/:

    .venv/bin/python -m pytest -n 0 tests/browser
    .venv/bin/python tests/browser/readme_screenshots.py

Each picture is cropped to the notebook area, scaled down and reduced to a small palette,
which keeps it well under 100 KB.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "build" / "screenshots"
TARGET = ROOT / "docs" / "screenshots"
# build/screenshots name -> docs/screenshots name
CHOSEN = {
    "05-lesson-05-slider-moved": "lesson-05-limit-slider",
    "08-exercise-05-check-passes": "exercise-05-check-passes",
    "04-lesson-01-quiz-answered": "lesson-01-quiz",
}
CROP = (285, 28, 1245, 775)   # the main area of a 1280x800 JupyterLab: no file browser
SCALE = 0.8
COLOURS = 128
LIMIT_BYTES = 100_000


def shrink(source: Path, target: Path) -> int:
    picture = Image.open(source).convert("RGB").crop(CROP)
    size = (round(picture.width * SCALE), round(picture.height * SCALE))
    picture = picture.resize(size, Image.LANCZOS)
    picture = picture.quantize(colors=COLOURS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    target.parent.mkdir(parents=True, exist_ok=True)
    picture.save(target, optimize=True)
    return target.stat().st_size


def main() -> int:
    missing = [name for name in CHOSEN if not (SOURCE / f"{name}.png").exists()]
    if missing:
        print(f"run the browser tests first; missing in {SOURCE}: {missing}")
        return 1
    for name, new in CHOSEN.items():
        size = shrink(SOURCE / f"{name}.png", TARGET / f"{new}.png")
        print(f"docs/screenshots/{new}.png: {size // 1024} KB")
        if size > LIMIT_BYTES:
            print("  too big for the README: crop or scale it further")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
