"""Self-check quizzes for the lessons, built from ipywidgets.

``quiz(question, options, answer, explanations)`` shows the question, one
radio button per option and a "Check" button; checking shows whether the
choice is right and why, in the words of the explanation for that option.
Nothing is graded or stored: the quiz is for the learner.

Text is written as in the lessons' Markdown: `backticks` mark inline code. The
question and the feedback show it in a code font; the options (radio-button
labels, which are plain text) show it without the backticks.
"""

from __future__ import annotations

import html
import re
from typing import Mapping, Sequence

import ipywidgets as widgets

__all__ = ["Quiz", "quiz"]

_CODE = re.compile(r"`([^`]+)`")


def inline_html(text: str) -> str:
    """``text`` as HTML, escaped, with each `code span` in a <code> element."""
    return _CODE.sub(r"<code>\1</code>", html.escape(text))


def plain(text: str) -> str:
    """``text`` without the backticks of its code spans (for plain-text labels)."""
    return _CODE.sub(r"\1", text)


class Quiz(widgets.VBox):
    """A multiple-choice question with feedback. Its text repr is stable (for nbval)."""

    def __init__(self, question: str, options: Sequence[str], answer: int,
                 explanations: Mapping[int, str] | None = None, why: str = "") -> None:
        if not 0 <= answer < len(options):
            raise ValueError("answer must be the index of one of the options")
        self.question = question
        self.options = list(options)
        self.answer = answer
        self.explanations = dict(explanations or {})
        self.why = why
        letters = "ABCDEFGH"
        self.choices = widgets.RadioButtons(
            options=[(f"{letters[i]}. {plain(text)}", i) for i, text in enumerate(self.options)],
            value=None, layout=widgets.Layout(width="auto"))
        self.button = widgets.Button(description="Check", button_style="primary",
                                     tooltip="Check your answer")
        self.feedback = widgets.HTML()
        self.button.on_click(lambda _: self.reveal())
        super().__init__([widgets.HTML(f"<b>{inline_html(question)}</b>"), self.choices,
                          self.button, self.feedback])
        self.add_class("asynclab-quiz")

    def verdict(self, choice: int | None) -> tuple[bool, str]:
        """Whether ``choice`` is right, and the text that explains it."""
        if choice is None:
            return False, "Pick one answer first."
        right = choice == self.answer
        text = self.explanations.get(choice, "")
        if right and self.why:
            text = f"{text} {self.why}".strip()
        return right, text

    def reveal(self) -> None:
        right, text = self.verdict(self.choices.value)
        if self.choices.value is None:
            self.feedback.value = f"<span>{inline_html(text)}</span>"
            return
        mark = ("<span style='color:#2ca02c'><b>Right.</b></span>" if right
                else "<span style='color:#d62728'><b>Not quite.</b></span>")
        self.feedback.value = f"{mark} {inline_html(text)}"

    def __repr__(self) -> str:
        return f"Quiz: {self.question}"


def quiz(question: str, options: Sequence[str], answer: int,
         explanations: Mapping[int, str] | None = None, why: str = "") -> Quiz:
    """Build a ``Quiz``; display it by making it the last expression of a cell."""
    return Quiz(question, options, answer, explanations, why)
