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


def test_peak_memory_sampler_sees_a_child_peak_that_lasts_a_moment(monkeypatch):
    """The sampler reads PSS near the RSS peak only; the peak of a forked child (300 MB for half a
    second, then freed) must still be in both numbers, and PSS must not be read at every sample."""
    import subprocess

    monkeypatch.syspath_prepend(str(REPO / "bench" / "vs_trl"))
    monkeypatch.delitem(sys.modules, "run", raising=False)
    import run
    code = ("import os, time\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    a = bytearray(300 * 2**20); time.sleep(0.5); del a; time.sleep(0.5); os._exit(0)\n"
            "os.waitpid(pid, 0); time.sleep(1.0)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    sampler = run.PeakRSS(proc.pid)
    assert proc.wait(timeout=60) == 0
    peak_rss, peak_pss = sampler.stop()
    assert peak_rss >= 300 * 2**20 and peak_pss >= 300 * 2**20
    assert peak_rss < 600 * 2**20  # not counted twice
    assert 1 <= sampler.pss_reads < 20  # about 40 RSS samples over the 2 s
