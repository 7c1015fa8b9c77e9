"""benchmarks/run_lessons.py: which rows fail, and the table it writes."""

import importlib.util
import json
import multiprocessing
import time
from pathlib import Path

spec = importlib.util.spec_from_file_location("run_lessons", Path(__file__).parent.parent / "benchmarks" / "run_lessons.py")
run_lessons = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_lessons)


def row(**changes):
    base = dict(lesson="05_the_3d_unet", mode="full", seconds=120.0, peak_rss_mib=900, claims=3, claims_held=3,
                failed_claims=[], error=None, date="d", machine="m", threads="1")
    return {**base, **changes}


def test_a_full_run_fails_on_claims_time_and_memory():
    assert run_lessons.problems(row(), 10, 2) == []
    found = run_lessons.problems(row(failed_claims=["it is faster"], seconds=700, peak_rss_mib=3000), 10, 2)
    assert found == ["claim does not hold: it is faster", "took 11.7 min (limit 10)", "peak RSS 2.93 GiB (limit 2)"]


def test_a_quick_run_fails_only_on_errors():
    assert run_lessons.problems(row(mode="quick", seconds=900, peak_rss_mib=5000), 10, 2) == []
    assert run_lessons.problems(row(mode="quick", error="ValueError: x"), 10, 2) == ["error: ValueError: x"]


def test_the_table_lists_every_row_and_the_claims_that_failed(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lessons, "RESULTS", tmp_path)
    run_lessons.write_table([row(), row(lesson="08_samplers_and_guidance", failed_claims=["variety falls"], claims_held=2)])
    table = (tmp_path / "lessons.md").read_text()
    assert "| 05_the_3d_unet | full | 2.0 min | 900 MiB | 3/3 | ok |" in table
    assert "| 08_samplers_and_guidance | full | 2.0 min | 900 MiB | 2/3 | claims fail |" in table
    assert "- 08_samplers_and_guidance (full): variety falls" in table


def test_the_table_says_when_a_lesson_was_over_its_time_or_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lessons, "RESULTS", tmp_path)
    slow = row(lesson="12_long_videos", seconds=834.0)
    slow["over_limits"] = [p for p in run_lessons.problems(slow, 10, 2) if p.startswith(("took", "peak RSS"))]
    run_lessons.write_table([row(), slow])
    table = (tmp_path / "lessons.md").read_text()
    assert "| 12_long_videos | full | 13.9 min | 900 MiB | 3/3 | took 13.9 min (limit 10) |" in table
    assert "| 05_the_3d_unet | full | 2.0 min | 900 MiB | 3/3 | ok |" in table


def test_merging_replaces_the_same_lesson_and_mode_and_keeps_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lessons, "RESULTS", tmp_path)
    run_lessons.merge_rows([row(), row(mode="quick"), row(lesson="08_samplers_and_guidance")])
    run_lessons.merge_rows([row(seconds=60.0)])
    rows = json.loads((tmp_path / "lessons.json").read_text())
    assert sorted((r["lesson"], r["mode"], r["seconds"]) for r in rows) == [
        ("05_the_3d_unet", "full", 60.0), ("05_the_3d_unet", "quick", 120.0), ("08_samplers_and_guidance", "full", 120.0)]
    assert "| 05_the_3d_unet | full | 1.0 min |" in (tmp_path / "lessons.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lessons.json", "lessons.md"]  # no temporary file left


def _merge_slowly(results, lesson):
    """A second run of the script: reads the results, then takes its time before writing."""
    run_lessons.RESULTS = results
    read = run_lessons._read_rows
    run_lessons._read_rows = lambda: (read(), time.sleep(0.5))[0]
    run_lessons.merge_rows([row(lesson=lesson)])


def test_two_runs_at_the_same_time_keep_each_others_rows(tmp_path):
    context = multiprocessing.get_context("fork")
    runs = [context.Process(target=_merge_slowly, args=(tmp_path, lesson)) for lesson in ("09_captions", "10_i2v")]
    for run in runs:
        run.start()
    for run in runs:
        run.join(30)
        assert run.exitcode == 0
    rows = json.loads((tmp_path / "lessons.json").read_text())
    assert sorted(r["lesson"] for r in rows) == ["09_captions", "10_i2v"]


def test_solutions_notebooks_are_selected_by_number_and_run_from_their_own_folder():
    found = run_lessons.solutions(["05", "12"])
    assert [path.name for path in found] == ["05_solutions.ipynb", "12_solutions.ipynb"]
    assert all(path.parent == run_lessons.NOTEBOOKS / "solutions" for path in found)
    assert [path.name[:2] for path in run_lessons.lessons(["05"])] == ["05"] and run_lessons.lessons(["05"])[0].parent == run_lessons.NOTEBOOKS
    try:
        run_lessons.solutions(["99"])
    except SystemExit as stop:
        assert "no solutions notebook numbered 99" in str(stop)
    else:
        raise AssertionError("an unknown number must stop the run")
