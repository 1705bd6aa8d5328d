"""bench/vs_trl/run.py --replot: the docs' sweep plots are drawn from the committed results.json."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_replot_prints_the_sweep_tables_and_draws_the_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench" / "vs_trl"))  # run.py imports sweep_plot beside it
    monkeypatch.delitem(sys.modules, "run", raising=False)
    import run
    png = tmp_path / "sweep.png"
    run.main(["--replot", str(REPO / "docs" / "perf_runs" / "r3_sweep.json"), str(png)])
    out = capsys.readouterr().out
    # the numbers docs/performance.md quotes for round 3's sweep (medians after the warm-up step)
    assert "| r512 | relift | 2.977 |" in out and "| r512 | trl | 7.743 |" in out
    assert "| 512 | 2.977 | 1.73 | 7.743 | 1.21 | 0.38x |" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
