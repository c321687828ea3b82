"""Grading: ``asynclab check`` (one learner) and ``asynclab grade`` (a class), on the host.

The package has three audiences, and this subpackage is the third:

* lessons import ``asynclab`` (timelines, virtual time, timing);
* checks (``asynclab.checks``, ``asynclab.checking``) judge one function in a running kernel;
* grading (here) runs learners' notebooks in fresh, sandboxed kernels and writes verdicts.

Modules:

* ``command``: ``asynclab grade``: find the class's notebooks, grade them several at once,
  resume, stop cleanly on a signal;
* ``judge``: build the notebook that runs (course cells, the learner's answers, hidden judging
  cells), run it, turn what happened into a verdict per exercise;
* ``kernel_process``: one kernel process under hard limits (time, memory, output);
* ``sandbox``: the bubblewrap sandbox each grading kernel starts in;
* ``kernel``: the kernel's own entry point inside the sandbox (limits, then ipykernel);
* ``guard``: the judge that runs inside the kernel, before and after the learner's code;
* ``report``: the gradebook (CSV, JSON) and the feedback pages.

Nothing here is imported by ``import asynclab``.
"""

import sys

# jsonschema (which nbformat uses) imports a checker for each string format whose library is
# installed, and nbformat validates without checking formats at all. The worst is rfc3987_syntax,
# for the "iri" formats: it builds some thirty Lark parsers as it is imported, about 0.9 s of
# every process that reads a notebook (python-jsonschema/jsonschema#1428); "duration" brings
# isoduration and arrow (30 ms). The grading tools are such processes, started again and again
# (asynclab check, grade, Dask workers): they tell Python these modules, which nothing else they
# run uses, are absent, and jsonschema goes on without those formats.
FORMAT_ONLY_MODULES = ("rfc3987_syntax", "rfc3987", "isoduration", "rfc3986_validator",
                       "rfc3339_validator", "webcolors", "uri_template", "fqdn")
for _name in FORMAT_ONLY_MODULES:
    sys.modules.setdefault(_name, None)  # type: ignore[arg-type]
