"""The analysis steps start without torch: a job that only reads tables must not pay 2 s and 500 MB to import it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

ANALYSIS_STEPS = ("collect", "table", "figure", "summary", "scorecard", "plan")
HEAVY = ("torch", "torchvision")


def test_analysis_steps_neither_import_nor_load_torch(tmp_path):
    result = tmp_path / "run" / "result.json"
    result.parent.mkdir()
    result.write_text(json.dumps({"tags": {"experiment": "e", "seed": "0", "branch": "dense"}, "test_acc": 0.5,
                                  "provenance": {}}))
    code = textwrap.dedent(f"""
        import sys
        from sparsebasin import cli
        for step in {ANALYSIS_STEPS!r}:
            cli._load(step)
        status = cli.main(["collect", "--inputs", {str(result)!r}, "--out", {str(tmp_path / 'runs.csv')!r}])
        print(status, sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-1] == "[]", res.stdout
    assert (tmp_path / "runs.csv").exists() and (tmp_path / "runs.csv.provenance.json").exists()
    recorded = json.loads((tmp_path / "runs.csv.provenance.json").read_text())
    import torch

    assert recorded["torch_version"] == torch.__version__  # read from torch/version.py, not by importing it
