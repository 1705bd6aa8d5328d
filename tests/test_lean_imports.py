"""A one-process RL run imports neither Ray nor pandas (issue 18.1: peak memory at most TRL's).

Ray costs ~30 MB and pandas ~60 MB of every training process's memory, and neither is needed
without the Ray backend: parquet is read with pyarrow, and the topology error the driver catches
lives outside the Ray module. The run is a real one (one GRPO step on a tiny model), since what
matters is what the whole path imports, not one module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_rl_trainer import make_workspace, overrides

REPO = Path(__file__).resolve().parents[1]

CODE = """
import json, runpy, sys
sys.argv = ['trainer.main_rl'] + sys.argv[1:]
try:
    runpy.run_module('trainer.main_rl', run_name='__main__', alter_sys=True)
except SystemExit as e:
    if e.code:
        raise
print('IMPORTED', json.dumps({m: m in sys.modules for m in ('ray', 'pandas', 'torch')}))
"""


def test_in_process_rl_run_imports_neither_ray_nor_pandas(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    args = overrides(ws, tmp_path / "out", **{"trainer.total_training_steps": 1, "trainer.resume_mode": "disable"})
    env = {**os.environ, "RELIFT_CPU_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("RAY_ADDRESS", None)
    res = subprocess.run([sys.executable, "-c", CODE, *args], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert (tmp_path / "out" / "metrics.jsonl").read_text().strip()  # the step ran and logged
    line = next(x for x in res.stdout.splitlines() if x.startswith("IMPORTED "))
    assert json.loads(line.removeprefix("IMPORTED ")) == {"ray": False, "pandas": False, "torch": True}
