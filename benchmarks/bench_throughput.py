"""Training throughput of our masked trainer vs the conventional PyTorch recipe (ResNet20xw, CIFAR-shaped data).

Both sides train the same ResNet20xw (same init, same ~90% global magnitude
mask, SGD momentum 0.9, weight decay 5e-4, cosine lr, batch 128) for the
same number of batches of random CIFAR-shaped uint8 images:

- ours: ``sparsebasin.training.fit`` itself, one epoch over an in-memory
  ``ArrayDataset`` of exactly ``--batches`` batches (on-device random crop +
  flip, masks as in ``sparsebasin.masking``, channels_last, bf16 autocast on
  CUDA; ``device.py``'s choices). Its images/s is the trainer's own
  ``metrics.csv`` figure (training loop only); the whole ``fit`` call
  (setup, a 100-image evaluation, checkpoint and result files) is timed too.
- baseline: a torchvision-CIFAR-style ``Dataset`` returning PIL images
  through ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``,
  ``ToTensor``, ``Normalize``, a ``DataLoader`` with ``--workers`` worker
  processes (started per epoch, the default), masks through
  ``torch.nn.utils.prune.custom_from_mask`` forward hooks, float32, default
  memory format, ``CosineAnnealingLR`` stepped per batch. Timed from creating
  the loader iterator to the last optimizer step.

The two alternate ``--rounds`` times per width; the ratio is ours / baseline
images/s (median of per-round ratios).

    .venv/bin/python benchmarks/bench_throughput.py                       # CPU here, w = 1, 2
    .venv/bin/python benchmarks/bench_throughput.py --device cuda --batches 200 --widths 1,2,4
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.nn.utils import prune
from torchvision import transforms

from _bench import alternate, load_average, write_results

from sparsebasin import checkpoints
from sparsebasin import device as devices
from sparsebasin.data import dataset_info
from sparsebasin.data.base import ArrayDataset
from sparsebasin.models import build_model, prunable_keys
from sparsebasin.pruning import prune_to
from sparsebasin.training import TrainConfig, fit


class CIFARStyle(torch.utils.data.Dataset):
    """What ``torchvision.datasets.CIFAR10`` does per item: HWC uint8 -> PIL image -> transform."""

    def __init__(self, data_hwc: np.ndarray, targets: list[int], transform):
        self.data, self.targets, self.transform = data_hwc, targets, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        img = Image.fromarray(self.data[i])
        return self.transform(img), self.targets[i]


def baseline_epoch(model_state, mask, model_cfg, data_hwc, targets, info, args, device) -> tuple[float, int]:
    """One conventional epoch; returns (seconds, images). ``args``: batch_size, workers."""
    model = build_model(model_cfg, info.num_classes, info.in_channels)
    model.load_state_dict(model_state)
    model.to(device)
    modules = dict(model.named_modules())
    for key, keep in mask.items():
        prune.custom_from_mask(modules[key.rsplit(".", 1)[0]], "weight", keep.to(device).float())
    tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(info.mean, info.std),
    ])
    ds = CIFARStyle(data_hwc, targets, tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                                         pin_memory=device.type == "cuda", drop_last=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=len(loader))
    model.train()
    seen = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        seen += y.numel()
    loss.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, seen


def ours_epoch(model_cfg, state, mask, train_ds, test_ds, cfg, out: Path, device, meta, run_name: str) -> float:
    """One epoch of our trainer (``fit``) from ``state`` with ``mask`` into ``out``; its images/s (metrics.csv)."""
    shutil.rmtree(out, ignore_errors=True)
    m = build_model(model_cfg, train_ds.info.num_classes, train_ds.info.in_channels)
    m.load_state_dict(state)
    fit(m, train_ds, test_ds, cfg, out_dir=out, mask=mask, data_seed=0, model_cfg=model_cfg, data_meta=meta,
        run_name=run_name, device=device, progress="log", write_predictions=False)
    return images_per_s(out)


def images_per_s(run_dir: Path, epoch: int = -1) -> float:
    """The training images/s a run recorded in its metrics.csv for ``epoch`` (default the last)."""
    with open(run_dir / "metrics.csv", encoding="utf-8") as fh:
        return float(list(csv.DictReader(fh))[epoch]["images_per_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="1,2")
    p.add_argument("--batches", type=int, default=20, help="training batches per measurement")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="baseline DataLoader worker processes")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads in the main process (default: torch's)")
    p.add_argument("--out", default="throughput")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = devices.resolve(args.device)
    info = dataset_info("cifar10")
    n = args.batches * args.batch_size
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    data_hwc = x.permute(0, 2, 3, 1).contiguous().numpy()
    targets = y.tolist()
    train_ds = ArrayDataset(info, x, y, "train")
    test_ds = ArrayDataset(info, x[:100].clone(), y[:100].clone(), "test")
    meta = checkpoints.data_meta(info)
    cfg = TrainConfig(epochs=1, lr=0.02, momentum=0.9, weight_decay=5e-4, batch_size=args.batch_size,
                      eval_batch_size=100, augment="on")
    tmp = Path(tempfile.mkdtemp(prefix="bench_throughput_"))
    print(f"ResNet20xw, {args.batches} batches of {args.batch_size} CIFAR-shaped images, sparsity {args.sparsity}, "
          f"device {device}, {torch.get_num_threads()} thread(s), baseline workers {args.workers}, "
          f"load {load_average():.1f}")
    results = {"config": {k: v for k, v in vars(args).items()}, "device": str(device), "widths": {}}
    try:
        for w in [int(v) for v in args.widths.split(",")]:
            model_cfg = {"name": "resnet20", "width": w}
            torch.manual_seed(w)
            model = build_model(model_cfg, 10, 3)
            state = {k: v.clone() for k, v in model.state_dict().items()}
            keys = prunable_keys(model)
            mask = prune_to(state, {k: torch.ones_like(state[k], dtype=torch.bool) for k in keys}, args.sparsity)
            ours_rate: list[float] = []
            base_rate: list[float] = []

            def ours():
                ours_rate.append(ours_epoch(model_cfg, state, mask, train_ds, test_ds, cfg, tmp / f"w{w}", device,
                                            meta, f"w{w}"))

            def baseline():
                secs, seen = baseline_epoch(state, mask, model_cfg, data_hwc, targets, info, args, device)
                base_rate.append(seen / secs)

            times = alternate({"ours": ours, "baseline": baseline}, args.rounds, label=f"w={w} ")
            per_round = [o / b for o, b in zip(ours_rate, base_rate)]
            entry = {
                "ours_images_per_s": ours_rate,
                "baseline_images_per_s": base_rate,
                "ours_fit_call_seconds": times["ours"],
                "baseline_epoch_seconds": [n / r for r in base_rate],
                "ratio": statistics.median(per_round),
                "ratio_per_round": per_round,
                "ratio_whole_fit_call": statistics.median(
                    [(n / t) / b for t, b in zip(times["ours"], base_rate)]),
            }
            results["widths"][str(w)] = entry
            print(f"w={w}: ours {statistics.median(ours_rate):.0f} img/s vs baseline "
                  f"{statistics.median(base_rate):.0f} img/s -> {entry['ratio']:.2f}x "
                  f"(whole fit call incl. setup/eval/files: {entry['ratio_whole_fit_call']:.2f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
