"""The results tree: every path the workflow writes, built and matched here and nowhere else.

A run lives where *what determines it* says, not where the experiment that
asked for it lives, so identical runs of different experiments are one
directory, trained once (open_lth names a run by the hash of its
hyper-parameters in the same spirit). The prefix stays readable; each
stage's settings become a short content key (8 hex digits of a sha256 of the
resolved settings, ``keys.key``):

    results/runs/{dataset}-{model}-w{width}/d{dense}/seed{s}/
        dense/{A,B}/                                  final.pt, result.json, ckpt/epoch{k}.pt, ...
        prune-{prune}/S{S}/, rounds/                  IMP of A (every target any experiment needs)
        match-{match}/[early/e{e}/ | cross/B{j}/]     perm.pt, perm.json
        sparse-{sparse}/[early/e{e}/ | cross/B{j}/ | dataorder/d{j}/]S{S}/k{k}/{branch}/
                                                      (permuted: pi(m_A) made in the run's job from
                                                      prune's mask.pt and match's perm.pt)
        lmc-{lmc}/                                    curve.csv, barriers.json
        impb-{impb}/round{r}.{csv,json}               Fig 4a
        plane-{plane}/S{S}/k{k}/plane.csv             Fig 4b
    results/{experiment}/                             what belongs to one experiment:
        tidy/, figures/, tables/, summary.md, index.csv (which run is which),
        {dataset}-{model}-w{width}/ensembles/S{S}/k{k}/{group}.json, .../manifest.txt
    results/logs/..., results/benchmarks/...          one per job, mirroring the job's output path

Why keys and not a tree of links: a link tree is a second copy of the grammar
that Snakemake would have to keep in step (it judges a symlink by its target's
time stamp), and shared file systems treat links unevenly; a key is stable
under any edit of other experiments, and ``index.csv`` names each run's study,
width, seed, sparsity, rewind point and branch.
"""

from __future__ import annotations

import re

from ..branches import SPARSE_BRANCHES

RESULTS = "results"
RUNS = f"{RESULTS}/runs"

_KEY = "[0-9a-f]{8}"
_SEED_DIR = rf"runs/[^/]+/d{_KEY}/seed\d+"
# wildcard constraints of the rules: a job's directory below results/ (the rules write "results/{job}/...")
PATTERNS = {
    "dense": rf"{_SEED_DIR}/dense/[AB]",
    "prune": rf"{_SEED_DIR}/prune-{_KEY}",
    "match": rf"{_SEED_DIR}/match-{_KEY}(/early/e\d+|/cross/B\d+)?",
    "sparse": rf"{_SEED_DIR}/sparse-{_KEY}(/early/e\d+|/cross/B\d+|/dataorder/d\d+)?/S0\.\d+/k\d+/({'|'.join(SPARSE_BRANCHES)})",
    "lmc": rf"{_SEED_DIR}/lmc-{_KEY}",
    "imp_barrier": rf"{_SEED_DIR}/impb-{_KEY}",
    "plane": rf"{_SEED_DIR}/plane-{_KEY}/S0\.\d+/k\d+",
}


def cell_dir(dataset: str, model: str, width: int) -> str:
    return f"{dataset}-{model}-w{int(width)}"


def seed_dir(dataset: str, model: str, width: int, dense_key: str, seed: int) -> str:
    return f"{RUNS}/{cell_dir(dataset, model, width)}/d{dense_key}/seed{int(seed)}"


def variant(kind: str | None, other: int | None) -> str:
    """The sub-directory of a study variant: early/e{epoch}, cross/B{j}, dataorder/d{j} (or nothing)."""
    if kind is None:
        return ""
    return {"early": f"early/e{other}/", "cross": f"cross/B{other}/", "dataorder": f"dataorder/d{other}/"}[kind]


def experiment_dir(experiment: str) -> str:
    return f"{RESULTS}/{experiment}"


def experiment_file(experiment: str, *parts: str) -> str:
    return "/".join([RESULTS, experiment, *parts])


def ensemble_path(experiment: str, cell: str, width, sparsity: str, k, group: str) -> str:
    """An ensemble's file; ``cell`` is '{dataset}-{model}', ``sparsity`` already formatted."""
    return experiment_file(experiment, f"{cell}-w{int(width)}", "ensembles", f"S{sparsity}", f"k{int(k)}", f"{group}.json")


def log_path(job_path: str, name: str = "job") -> str:
    """Where a job's log goes: results/logs/ mirroring the job's own path."""
    rel = job_path[len(RESULTS) + 1:] if job_path.startswith(RESULTS + "/") else job_path
    return f"{RESULTS}/logs/{rel}/{name}.log"


def benchmark_path(job_path: str, name: str = "job") -> str:
    rel = job_path[len(RESULTS) + 1:] if job_path.startswith(RESULTS + "/") else job_path
    return f"{RESULTS}/benchmarks/{rel}/{name}.tsv"


def matches(kind: str, path: str) -> bool:
    """Whether ``path`` (below results/ or with it) is a directory of a ``kind`` job."""
    rel = path[len(RESULTS) + 1:] if path.startswith(RESULTS + "/") else path
    return re.fullmatch(PATTERNS[kind], rel) is not None
