"""``make bench-local`` writes its own section of ``benchmarks/results.md``; the cost benchmark,
which writes the whole file, keeps it (``benchmarks.local_load.keep_section``)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.local_load import BEGIN, END, keep_section, percentile, replace_section

COST = "# Cost per message\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"


def test_the_section_is_appended_then_replaced_in_place() -> None:
    once = replace_section(COST, "## Load\n\nfirst run\n")
    assert once.startswith(COST) and once.count(BEGIN) == 1 and "first run" in once
    twice = replace_section(once + "\n## A later section\n", "## Load\n\nsecond run\n")
    assert "first run" not in twice and "second run" in twice
    assert twice.count(BEGIN) == 1 and twice.count(END) == 1
    assert twice.index(END) < twice.index("## A later section")  # what follows the section stays


def test_rewriting_the_whole_file_keeps_the_section(tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    path.write_text(replace_section(COST, "## Load\n\nmeasured\n"))
    rewritten = keep_section(path, COST.replace("| 1 | 2 |", "| 3 | 4 |"))
    assert "| 3 | 4 |" in rewritten and "| 1 | 2 |" not in rewritten
    assert rewritten.count(BEGIN) == 1 and "measured" in rewritten
    assert keep_section(tmp_path / "missing.md", COST) == COST


def test_percentiles_are_values_that_were_measured() -> None:
    values = [float(v) for v in range(1, 201)]
    assert percentile(values, 50) == 100.0
    assert percentile(values, 95) == 190.0
    assert percentile(values, 99) == 198.0
    assert percentile([7.0], 95) == 7.0
