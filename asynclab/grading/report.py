"""What ``asynclab grade`` writes: the gradebook (CSV and JSON) and one feedback page per learner.

* ``OUT/gradebook.csv``: one row per learner: ``student``, one column per exercise
  (its points: 1 or 0, or ``not graded: interrupted`` / ``not graded: error``),
  and ``total`` (the sum of the points).
* ``OUT/gradebook.json``: the same, with every detail: per exercise the findings
  of the public and hidden checks, the messages, errors and durations; per
  notebook the cells run, notes, and answer cells flagged for review.
* ``OUT/feedback/<student>.html``: a self-contained page (timelines embedded as
  PNG, every text escaped) that says per exercise what passed, what failed and
  why.
"""

from __future__ import annotations

import csv
import html
import json
import os
import time
from pathlib import Path
from typing import Any

from asynclab.grading.judge import GRADER_VERSION, ExerciseVerdict, NotebookVerdict

__all__ = ["write_outputs", "POINTS_RULE"]

NOT_SUBMITTED = "not submitted"
INTERRUPTED = "not graded: interrupted"
POINTS_RULE = ("1 point per exercise when its answer cell ran without error within the time "
               "limit, every property of the public and of the hidden check passed, and no "
               "tampering was detected; otherwise 0")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def exercise_columns(run) -> list[tuple[str, str]]:
    """``[(exercise, notebook), ...]`` in course order."""
    return [(name, stem) for stem, course in run.courses.items() for name in course.exercises]


def cell_value(run, learner, stem: str, exercise: str) -> int | str:
    """Points for one exercise of one learner, or why there are none to give."""
    if stem not in learner.submissions:
        return 0
    verdict = run.results.get((learner.name, stem))
    if verdict is None:
        return INTERRUPTED
    if verdict.status == "error":
        return "not graded: error"
    found = verdict.exercises.get(exercise)
    return found.points if found else 0


def learner_row(run, learner) -> dict[str, Any]:
    row: dict[str, Any] = {"student": learner.name}
    for exercise, stem in exercise_columns(run):
        row[exercise] = cell_value(run, learner, stem, exercise)
    row["total"] = sum(v for v in row.values() if isinstance(v, int) and not isinstance(v, bool))
    return row


def notebook_summary(run, learner, stem: str) -> dict[str, Any]:
    if stem not in learner.submissions:
        return {"status": NOT_SUBMITTED}
    verdict = run.results.get((learner.name, stem))
    if verdict is None:
        return {"status": INTERRUPTED, "source": str(learner.submissions[stem].path)}
    return verdict.to_dict(with_png=False)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet will not run as a formula (OWASP, "CSV injection").

    A learner controls their folder's name: ``=HYPERLINK(...)`` or ``@SUM(...)`` would
    become a live formula in the instructor's spreadsheet. Such text is prefixed with
    ``'``, which spreadsheets show as text; numbers are left as they are.
    """
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def write_csv(path: Path, run) -> None:
    columns = ["student", *(name for name, _ in exercise_columns(run)), "total"]
    rows = [{key: csv_safe(value) for key, value in learner_row(run, learner).items()}
            for learner in run.learners]
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def write_json(path: Path, run, settings) -> None:
    limits = settings.limits
    document = {
        "grader_version": GRADER_VERSION,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "course": str(settings.root),
        "submissions": str(settings.submissions),
        "interrupted": run.interrupted,
        "points_rule": POINTS_RULE,
        "limits": {"timeout_cell_s": limits.timeout_cell,
                   "timeout_notebook_s": limits.timeout_notebook,
                   "memory_mb": limits.memory_mb, "variants": list(limits.variants)},
        # Whether learner code ran in the bubblewrap sandbox (asynclab.grading.sandbox), or
        # with the grader's own rights (--no-sandbox).
        "sandbox": limits.sandbox,
        "warm_kernels": limits.warm_kernels,
        "exercises": [{"id": name, "notebook": stem} for name, stem in exercise_columns(run)],
        "stray_files": run.stray,
        "learners": [],
    }
    for learner in run.learners:
        row = learner_row(run, learner)
        document["learners"].append({
            "student": learner.name,
            "feedback": f"feedback/{learner.slug}.html",
            "points": {name: row[name] for name, _ in exercise_columns(run)},
            "total": row["total"],
            "max": len(exercise_columns(run)),
            "notes": learner.notes,
            "notebooks": {stem: notebook_summary(run, learner, stem) for stem in run.courses},
        })
    _atomic_write(path, json.dumps(document, indent=1))


# -- feedback pages ----------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,sans-serif;max-width:58rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem} h2{font-size:1.2rem;border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
h3{font-size:1.05rem;margin-bottom:.3rem} table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top;font-size:.92rem}
.pass{color:#1a7f37;font-weight:600} .fail{color:#c62828;font-weight:600} .muted{color:#666}
pre{background:#f6f8fa;padding:.5rem;overflow-x:auto;font-size:.85rem;white-space:pre-wrap}
img{max-width:100%;border:1px solid #eee} .box{background:#fff8e1;padding:.5rem .8rem;border-left:4px solid #f9a825}
""".strip()


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _badge(passed: bool, text: str | None = None) -> str:
    return f'<span class="{"pass" if passed else "fail"}">{_e(text or ("PASS" if passed else "FAIL"))}</span>'


def _findings_table(variant: str, report: dict[str, Any]) -> str:
    rows = []
    for f in report.get("findings", []):
        hint = f'<br><span class="muted">hint: {_e(f.get("hint", ""))}</span>' if f.get("hint") else ""
        rows.append(f"<tr><td>{_badge(bool(f.get('passed')))}</td><td>{_e(f.get('property', ''))}</td>"
                    f"<td>{_e(f.get('message', ''))}{hint}</td></tr>")
    where = report.get("variation")
    if where and not report.get("passed", True):
        variant = f"{variant} check, in the run where {where}"
    else:
        variant = f"{variant} check"
    return (f"<p><b>{_e(variant)}</b></p><table><tr><th></th><th>property</th>"
            f"<th>what was observed</th></tr>{''.join(rows)}</table>")


def _exercise_section(ex: ExerciseVerdict, variants: tuple[str, ...], graded: bool = True) -> str:
    """One exercise: its points ("1 / 1 point"; "1 / 1" for a learner's own check), its
    findings and timeline."""
    badge = _badge(ex.passed, f"{ex.points} / 1" + (" point" if graded else ""))
    parts = [f"<h3>{_e(ex.exercise)}: {badge}</h3>"]
    if ex.messages:
        items = "".join(f"<li>{_e(m)}</li>" for m in ex.messages)
        parts.append(f"<ul>{items}</ul>")
    elif ex.passed:
        parts.append("<p>Every property of every check passed.</p>")
    for variant in variants:
        report = ex.reports.get(variant)
        if report is not None:
            parts.append(_findings_table(variant, report))
    if ex.png:
        parts.append(f'<p class="muted">The timeline of your function in the public check '
                     f'(one row per task; pale: waiting, dark: running):</p>'
                     f'<img alt="timeline of {_e(ex.exercise)}" src="data:image/png;base64,{_e(ex.png)}">')
    for error in ex.errors:
        if error:
            parts.append(f"<pre>{_e(error)}</pre>")
    if ex.duration_s:
        parts.append(f'<p class="muted">judged in {ex.duration_s:.2f} s</p>')
    return "\n".join(parts)


def _run_log(verdict: NotebookVerdict) -> str:
    rows = "".join(f"<tr><td>{_e(c.label)}</td><td>{_badge(c.status == 'ok', c.status)}</td>"
                   f"<td>{c.seconds:.2f} s</td><td>{_e(c.error)}</td></tr>" for c in verdict.cells)
    if not rows:
        return ""
    return (f"<details><summary>How your notebook ran ({verdict.attempts} kernel"
            f"{'s' if verdict.attempts != 1 else ''}, {verdict.duration_s:.1f} s)</summary>"
            f"<table><tr><th>cell</th><th>status</th><th>time</th><th>error</th></tr>{rows}"
            "</table></details>")


def _notebook_section(run, learner, stem: str, variants: tuple[str, ...]) -> str:
    head = f"<h2>{_e(stem)}.ipynb</h2>"
    course = run.courses[stem]
    verdict = run.results.get((learner.name, stem))
    if verdict is None:
        return head + "<p class='box'>Not graded: grading was interrupted before this notebook.</p>"
    parts = [head]
    if verdict.message:
        parts.append(f'<p class="box">{_e(verdict.message)}</p>')
    if verdict.notes:
        parts.append("<p>Notes:</p><ul>" + "".join(f"<li>{_e(n)}</li>" for n in verdict.notes)
                     + "</ul>")
    for name in course.exercises:
        ex = verdict.exercises.get(name)
        if ex is not None:
            parts.append(_exercise_section(ex, variants))
    parts.append(_run_log(verdict))
    return "\n".join(parts)


def feedback_page(run, learner, settings) -> str:
    row = learner_row(run, learner)
    columns = exercise_columns(run)
    summary = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(stem)}.ipynb</td><td>{_e(row[name])}"
        f"{'' if stem in learner.submissions else ' (not submitted)'}</td></tr>"
        for name, stem in columns)
    notes = ""
    if learner.notes:
        notes = ("<h2>Files in your folder</h2><ul>"
                 + "".join(f"<li>{_e(n)}</li>" for n in learner.notes) + "</ul>")
    interrupted = ("<p class='box'>Grading was interrupted; notebooks marked 'not graded' will be "
                   "graded in the next run.</p>" if run.interrupted else "")
    handed_in = [stem for stem in run.courses if stem in learner.submissions]
    missing = [stem for stem in run.courses if stem not in learner.submissions]
    sections = "\n".join(_notebook_section(run, learner, stem, settings.limits.variants)
                         for stem in handed_in)
    if missing:
        sections += ("<h2>Not submitted</h2><p>No file with these names in your folder (0 points "
                     "each): " + ", ".join(f"{_e(stem)}.ipynb" for stem in missing) + ".</p>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Feedback for {_e(learner.name)}</title>
<style>{STYLE}</style></head><body>
<h1>Feedback for {_e(learner.name)}</h1>
<p><b>{row['total']} / {len(columns)} points.</b> {_e(POINTS_RULE)}.</p>
{interrupted}
<table><tr><th>exercise</th><th>notebook</th><th>points</th></tr>{summary}</table>
{notes}
{sections}
<p class="muted">asynclab grader {GRADER_VERSION}, {_e(time.strftime('%Y-%m-%d %H:%M'))}</p>
</body></html>
"""


def check_page(results: list[tuple[str, Any]]) -> str:
    """``asynclab check --html``: what the check cells show, for each notebook checked (the
    report of every check and the learner's timeline), as one self-contained page.

    ``results``: ``(path, NotebookVerdict)``, or ``(path, message)`` for a file that could not
    be judged.
    """
    sections = []
    for path, verdict in results:
        sections.append(f"<h2>{_e(path)}</h2>")
        if isinstance(verdict, str):
            sections.append(f'<p class="box">{_e(verdict)}</p>')
            continue
        if verdict.message:
            sections.append(f'<p class="box">{_e(verdict.message)}</p>')
        if verdict.notes:
            sections.append("<p>Notes:</p><ul>" + "".join(f"<li>{_e(n)}</li>"
                                                          for n in verdict.notes) + "</ul>")
        for ex in verdict.exercises.values():
            sections.append(_exercise_section(ex, ("public",), graded=False))
        sections.append(_run_log(verdict))
    body = "\n".join(sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>asynclab check</title>
<style>{STYLE}</style></head><body>
<h1>asynclab check</h1>
{body}
<p class="muted">asynclab check, {_e(time.strftime('%Y-%m-%d %H:%M'))}</p>
</body></html>
"""


def write_outputs(run, settings) -> list[Path]:
    """Write the gradebook and the feedback pages; returns the paths written."""
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path, feedback = out / "gradebook.csv", out / "gradebook.json", out / "feedback"
    write_csv(csv_path, run)
    write_json(json_path, run, settings)
    for learner in run.learners:
        _atomic_write(feedback / f"{learner.slug}.html", feedback_page(run, learner, settings))
    return [csv_path, json_path, feedback]
