"""Cost of the artifact checks (io: tensor checksums at save and load, the finite check at load).

Saves and loads a ResNet50-sized checkpoint (ImageNet head, 97.7 MiB, 320
tensors) through ``io.save_artifact`` / ``io.load_artifact`` with the checks
and with them switched off (as before they existed), and prints the medians
and the ratio. ``python benchmarks/checksum_cost.py [--dir DIR] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sparsebasin import io
from sparsebasin.models import build_model


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", default=None, help="where the file is written (default: a temporary directory)")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    model = build_model({"name": "resnet50"}, 1000, 3, input_size=224)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    mib = sum(v.numel() * v.element_size() for v in sd.values()) / 2**20
    path = Path(tempfile.mkdtemp(dir=args.dir)) / "final.pt"
    real = io.tensor_checksums, io.verify_checksums, io.check_finite

    def once(checks: bool) -> tuple[float, float]:
        if not checks:
            io.tensor_checksums = lambda obj: {}
            io.verify_checksums = lambda obj, path: obj.pop(io.CHECKSUMS, None)
            io.check_finite = lambda kind, obj, path: None
        try:
            t0 = time.perf_counter()
            io.save_artifact(path, "checkpoint", {"state_dict": sd})
            t1 = time.perf_counter()
            io.load_artifact(path, "checkpoint")
            return t1 - t0, time.perf_counter() - t1
        finally:
            io.tensor_checksums, io.verify_checksums, io.check_finite = real

    times = {False: [], True: []}
    for _ in range(args.repeat):
        for checks in (False, True):
            times[checks].append(once(checks))
    print(f"state dict {mib:.1f} MiB, {len(sd)} tensors, file in {path.parent}")
    total = {}
    for checks in (False, True):
        save = statistics.median(t[0] for t in times[checks])
        load = statistics.median(t[1] for t in times[checks])
        total[checks] = save + load
        print(f"checks {'on ' if checks else 'off'}: save {save:.3f} s, load {load:.3f} s, save+load {save + load:.3f} s")
    print(f"ratio on/off: {total[True] / total[False]:.2f}")
    path.unlink()


if __name__ == "__main__":
    main()
