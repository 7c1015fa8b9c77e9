"""Lessons are committed clean and named NN_topic.ipynb; nbval executes them
(configured in pyproject.toml: every notebook under notebooks/ is collected)."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_lessons():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_is_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    dirty = [
        i
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: code cells {dirty} keep outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_is_named_and_has_objectives_and_summary(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), f"{path.name}: lessons are named NN_topic.ipynb"
    text = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")
    for heading in ("Objectives", "Summary", "Exercises"):
        assert heading in text, f"{path.name}: the lesson has no '{heading}' section"


# Issue 18: "when a learner's function passes its check, the lesson goes on with it". A check whose
# function is not handed to yours_or_reference must be listed here with the reason; a new check that
# is neither fails the test below.
NOT_USED_DOWNSTREAM = {
    ("03", "check_causal_block"): "the causal variants are drawn before the exercise; nothing after it runs a causal block",
    ("04", "check_eps_to_x0"): "the conversions are shown before the exercise with predict_x0_eps; none is done by hand later",
    ("04", "check_velocity_to_x0"): "the conversions are shown before the exercise with predict_x0_eps; none is done by hand later",
    ("05", "check_unet_forward"): "it runs the toy TinyUNetParts; the package's U-Net has its own forward",
    ("05", "check_temporal_layer"): "the lesson inflates with UNet3D.from_image_model; the learner's layer would mean rewriting section 5",
    ("12", "check_blend"): "the pipeline blends internally; section 6 only counts the windows",
}


def _checks_and_reuse(path: Path) -> tuple[list[tuple[str, str]], str]:
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    return re.findall(r"lesson\d\d\.(check_\w+)\((\w+)\)", code), code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_passing_check_hands_the_learners_function_to_the_rest_of_the_lesson(path):
    checks, code = _checks_and_reuse(path)
    lesson = path.name[:2]
    missing = [check for check, function in checks
               if not re.search(rf"yours_or_reference\(\s*\w+,\s*{function}\b", code) and (lesson, check) not in NOT_USED_DOWNSTREAM]
    assert not missing, (f"{path.name}: {missing} pass(es) the learner's function to nothing downstream: "
                         "use yours_or_reference, or list the check in NOT_USED_DOWNSTREAM with the reason")


def test_the_list_of_checks_not_used_downstream_is_current():
    found = {(path.name[:2], check) for path in NOTEBOOKS for check, _ in _checks_and_reuse(path)[0]}
    stale = sorted(set(NOT_USED_DOWNSTREAM) - found)
    assert not stale, f"NOT_USED_DOWNSTREAM lists checks the lessons no longer call: {stale}"
