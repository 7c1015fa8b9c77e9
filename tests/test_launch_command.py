"""Issue 18: the README's command 1 opens lesson 00 in a JupyterLab that serves the repository
root, so that benchmarks/results/ and data/README.md, which the lessons point to, open in it.
Given only a file, jupyter-server serves that file's folder (notebooks/): the root must be set."""

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _launch_arguments() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("**1. Run the course**", 1)[1].split("**2.", 1)[0]
    command = re.search(r"```bash\n(.*?)\n```", block, re.S).group(1)
    return shlex.split(command.split("jupyter lab", 1)[1])


def test_command_one_serves_the_repository_root_and_opens_lesson_00():
    arguments = _launch_arguments()
    assert "--ServerApp.root_dir=." in arguments, arguments
    files = [a for a in arguments if not a.startswith("-")]
    assert files == ["notebooks/00_setup_and_moving_mnist.ipynb"] and (ROOT / files[0]).is_file()


def test_the_files_the_lessons_point_to_are_under_that_root():
    assert (ROOT / "data" / "README.md").is_file()
    assert (ROOT / "benchmarks" / "results" / "lessons.md").is_file()
