"""benchmarks/gpu_check.py on CPU (--quick): every device path it exercises on a GPU runs here too, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_passes_on_cpu(tmp_path):
    out = tmp_path / "throughput.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                          "--threads", "1", "--throughput", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = res.stdout.splitlines()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    verdicts = {line.split(":", 1)[0].split(" ", 1)[1]: line.split(" ", 1)[0] for line in lines
                if line.split(" ", 1)[0] in ("PASS", "FAIL", "SKIP")}
    for check in ("dense training", "bf16 vs fp32", "deterministic reruns", "prune (IMP-FT)", "match", "sparse branches", "fused = separate",
                  "interpolate, every mode", "plane", "ensemble", "resume across a GPU-count change"):
        assert verdicts.get(check) == "PASS", (check, res.stdout[-3000:])
    assert "FAIL" not in verdicts.values()
    assert lines[-1].startswith(f"{sum(v == 'PASS' for v in verdicts.values())} passed, 0 failed"), lines[-1]
    payload = json.loads(out.read_text())
    assert payload["device"] == "cpu" and set(payload["models"]) == {"resnet20", "vgg11"}
    assert payload["widths"]["1"]["ours_images_per_s"][0] > 0  # the layout bench_grid_cost.py reads
