"""Flip one bit at every byte of a small checkpoint, mask and predictions file and load each: counts of
refused (one line), unchanged and anything else (docs/reliability.md). ``python benchmarks/bitflip_sweep.py``."""
import tempfile
from pathlib import Path

import torch

from sparsebasin import io
from sparsebasin.checkpoints import data_meta, load_checkpoint, save_checkpoint, save_mask
from sparsebasin.data import dataset_info
from sparsebasin.errors import UserError
CFG = {"name": "mlp", "width": 1, "hidden": 8, "depth": 2}
META = data_meta(dataset_info("mnist1d"))
tmp = Path(tempfile.mkdtemp())
def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) == type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)
def sweep(name, path, load, bit):
    good = load(path); data = path.read_bytes(); refused = harmless = silent = 0; bad = []
    for i in range(len(data)):
        raw = bytearray(data); raw[i] ^= bit; path.write_bytes(bytes(raw))
        try:
            got = load(path)
        except UserError:
            refused += 1; continue
        except Exception as e:
            bad.append((i, type(e).__name__)); continue
        if same(good, got): harmless += 1
        else: silent += 1; bad.append((i, "silent"))
    path.write_bytes(data)
    print(f"{name}: {len(data)} bytes, flip 0x{bit:02x}: refused {refused}, unchanged {harmless}, other {len(bad)} {bad[:5]}")
torch.manual_seed(0)
m = torch.nn.Linear(3, 2)
p = tmp / "c.pt"; save_checkpoint(p, m, CFG, META, epoch=1)
for bit in (0x01, 0x80): sweep("checkpoint", p, load_checkpoint, bit)
p = tmp / "m.pt"; save_mask(p, {"weight": torch.tensor([[True, False, True], [False, True, True]])}, CFG, META, {"requested": 0.33})
sweep("mask", p, lambda q: io.load_artifact(q, "mask"), 0x01)
p = tmp / "p.pt"; io.save_artifact(p, "predictions", {"logits": torch.randn(4, 3), "labels": torch.tensor([0, 1, 2, 0])})
sweep("predictions", p, lambda q: io.load_artifact(q, "predictions"), 0x01)
