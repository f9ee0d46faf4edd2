"""Images/s of ImageNet's input path alone (decode, crop, flip, normalise, on the device), ours against the
torchvision ImageFolder + DataLoader + PIL transforms baseline, on a generated JPEG tree, in one run.

    .venv/bin/python benchmarks/bench_imagenet_input.py                      # CPU, 2 workers
    .venv/bin/python benchmarks/bench_imagenet_input.py --device cuda --workers 8 --images 4096

Candidates, alternating rounds: ``baseline`` (ImageFolder, RandomResizedCrop + flip + ToTensor + Normalize
in the workers, then .to(device)), ``ours_pil`` (``sparsebasin.data.batches``: uint8 crops in the workers,
normalised on the device) and ``ours_device`` (``--imagenet-decode device``: workers read bytes, the batch
is decoded and cropped on the device with torchvision.io.decode_jpeg; nvjpeg on CUDA). Prints each
ratio against the baseline and the load average; writes benchmarks/results/imagenet_input.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from _bench import alternate, load_average, ratio_summary, write_results

from sparsebasin.data import batches, load_split


def write_tree(root: Path, images: int, classes: int = 8, size=(375, 500), seed: int = 0) -> None:
    """ImageNet-like JPEGs (smooth content plus noise, 375 x 500, quality 90), stored class by class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    for split in ("train", "val"):
        for i in range(images if split == "train" else classes):
            c = i % classes
            d = root / "imagenet" / split / f"n{c:08d}"
            d.mkdir(parents=True, exist_ok=True)
            a, b = rng.uniform(0.5, 3, 2)
            base = np.stack([(xx * a) % 256, (yy * b) % 256, ((xx + yy) * (a + b)) % 256], axis=2)
            img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"img{i:06d}.JPEG", quality=90)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="bench_imagenet_") as tmp:
        root = Path(tmp)
        write_tree(root, args.images)
        ds = dataclasses.replace(load_split("imagenet", root, "train"), num_workers=args.workers)
        on_device = dataclasses.replace(ds, decode="device")
        from torchvision import datasets, transforms

        info = ds.info
        tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                 transforms.ToTensor(), transforms.Normalize(info.mean, info.std)])
        folder = datasets.ImageFolder(str(root / "imagenet" / "train"), transform=tf)

        def baseline():
            loader = torch.utils.data.DataLoader(folder, batch_size=args.batch_size, shuffle=True,
                                                 num_workers=args.workers, pin_memory=dev.type == "cuda")
            for x, y in loader:
                x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)

        def ours(data):
            def run():
                for _x, _y in batches(data, args.batch_size, shuffle=True, data_seed=0, epoch=0, augment=True,
                                      device=dev):
                    pass
            return run

        print(f"ImageNet input, {args.images} JPEGs 375x500, batch {args.batch_size}, {args.workers} workers, "
              f"device {dev}, load {load_average():.1f}")
        times = alternate({"baseline": baseline, "ours_pil": ours(ds), "ours_device": ours(on_device)}, args.rounds)
        out = {"images": args.images, "batch_size": args.batch_size, "workers": args.workers, "device": str(dev),
               "images_per_s": {k: [args.images / t for t in v] for k, v in times.items()}}
        for cand in ("ours_pil", "ours_device"):
            r = ratio_summary(times, "baseline", cand)
            out[cand] = r
            print(f"{cand}: {args.images / r['candidate_seconds_median']:.0f} img/s vs baseline "
                  f"{args.images / r['baseline_seconds_median']:.0f} img/s -> {r['speedup']:.2f}x "
                  f"(load {load_average():.1f})")
        write_results("imagenet_input", out)


if __name__ == "__main__":
    main()
