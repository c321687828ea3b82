"""The ``asynclab`` command: ``asynclab exercises`` (and, as the course grows, check and grade)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asynclab.authoring import AuthoringError, write_exercises


def _course_root() -> Path:
    """The folder with solutions/ and exercises/: the current one, or the package's checkout."""
    here = Path.cwd()
    if (here / "solutions").is_dir():
        return here
    return Path(__file__).resolve().parent.parent


def cmd_exercises(args: argparse.Namespace) -> int:
    root = Path(args.root) if args.root else _course_root()
    try:
        written = write_exercises(root / "solutions", root / "exercises")
    except AuthoringError as exc:
        print(f"asynclab exercises: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path.relative_to(root)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asynclab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("exercises", help="regenerate exercises/ from solutions/")
    p.add_argument("--root", help="the course folder (default: this folder)")
    p.set_defaults(func=cmd_exercises)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
