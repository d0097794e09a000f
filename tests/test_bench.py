"""The `make bench` harness itself works: it runs a figure and prints a table the README
can take. No time is asserted (speed is the bench's report, not a test)."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "bench.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("idrun_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pair_stats_are_the_median_and_spread_of_the_pair_ratios() -> None:
    bench = _bench_module()
    # pair ratios 1, 2, 3, 4, 10: their median is 3; the ratio of the medians
    # (median a 4 / median b 1 = 4) is not what the bench reports
    pairs = [(1.0, 1.0), (4.0, 2.0), (9.0, 3.0), (4.0, 1.0), (10.0, 1.0)]
    med, q1, q3, lo, hi = bench.pair_stats(pairs)
    assert (med, q1, q3, lo, hi) == (3.0, 2.0, 4.0, 1.0, 10.0)
    assert bench.verdict(bench.BY_ID["2"], 1.3) == "PASS"
    assert bench.verdict(bench.BY_ID["2"], 1.31) == "FAIL"
    assert bench.verdict(bench.BY_ID["r1"], 9.0) == "INFO"


def test_figures_are_selected_by_id_or_by_goal_number() -> None:
    bench = _bench_module()
    ids = [f.fid for f in bench.select("1,3m")]
    assert ids == ["1a", "1b", "1c", "3m"]
    assert [f.fid for f in bench.select("3")] == ["3", "3m"]
    assert [f.fid for f in bench.select("")] == [f.fid for f in bench.FIGURES]
    with pytest.raises(bench.BenchError, match="no figure '9'"):
        bench.select("9")
    # every figure has a runner, and every runner a figure
    assert set(bench.RUN) == set(bench.BY_ID)


def test_make_bench_runs_one_figure_and_prints_the_readme_table() -> None:
    """Figure 5c (idrun map, any user) with three pairs, as `make bench BENCH=5c
    BENCH_PAIRS=3 BENCH_FORMAT=md` runs it: the idrun next to this interpreter."""
    res = subprocess.run([sys.executable, str(BENCH), "--only", "5c", "--pairs", "3",
                          "--format", "md", "--python", sys.executable],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("idrun benchmarks, ")
    assert "3 alternating pairs" in lines[0]
    assert lines[2].startswith("| # | figure | target | measured |")
    rows = [ln for ln in lines if ln.startswith("| 5c |")]
    assert len(rows) == 1, res.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[2] == "≤ 1.15×"
    assert re.fullmatch(r"\d+\.\d\d×", cells[3]), cells
    assert re.fullmatch(r"IQR \d+\.\d\d–\d+\.\d\d, min–max \d+\.\d\d–\d+\.\d\d \(3 pairs\)",
                        cells[4]), cells
    assert re.search(r" \d+\.\d\d ms$", cells[5]) and re.search(r" \d+\.\d\d ms$", cells[6])
    assert cells[7] in ("PASS", "FAIL")
    failed = "5c" if cells[7] == "FAIL" else "none"
    assert lines[-1] == f"bench: FAILED: {failed} (1 {cells[7]})"
    # progress (the text form of the same figure) went to stderr, not into the table
    assert "[5c] idrun map, 340 ranges" in res.stderr


def test_an_unknown_figure_is_refused_before_anything_runs() -> None:
    res = subprocess.run([sys.executable, str(BENCH), "--only", "7z", "--python",
                          sys.executable], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "no figure '7z'" in res.stderr
    assert "idrun benchmarks" not in res.stdout + res.stderr
