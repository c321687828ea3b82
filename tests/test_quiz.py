import pytest

from asynclab.quiz import quiz


def make():
    return quiz("Which one runs concurrently?", ["await coro()", "create_task(coro())"], answer=1,
                explanations={0: "await waits right there.", 1: "a task is scheduled at once."},
                why="The loop runs it at the next await.")


def test_right_and_wrong_answers_get_their_explanations():
    q = make()
    assert q.verdict(1) == (True, "a task is scheduled at once. The loop runs it at the next await.")
    assert q.verdict(0) == (False, "await waits right there.")
    assert q.verdict(None)[0] is False


def test_clicking_check_shows_feedback():
    q = make()
    q.choices.value = 0
    q.button.click()
    assert "Not quite" in q.feedback.value and "await waits" in q.feedback.value
    q.choices.value = 1
    q.button.click()
    assert "Right" in q.feedback.value


def test_repr_is_stable_and_answer_index_is_validated():
    assert repr(make()) == "Quiz: Which one runs concurrently?"
    with pytest.raises(ValueError):
        quiz("?", ["a"], answer=3)


def test_inline_code_is_rendered_and_escaped():
    q = quiz("What does `await a < b` do?", ["runs `coro()`", "nothing"], answer=0,
             explanations={0: "`await` <b>runs</b> it", 1: "no"})
    question = q.children[0].value
    assert question == "<b>What does <code>await a &lt; b</code> do?</b>"
    assert [label for label, _ in q.choices.options] == ["A. runs coro()", "B. nothing"]
    q.choices.value = 0
    q.button.click()
    assert "<code>await</code> &lt;b&gt;runs&lt;/b&gt; it" in q.feedback.value
    assert repr(q) == "Quiz: What does `await a < b` do?"  # the committed text output is unchanged
