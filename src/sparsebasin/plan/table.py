"""The run table: every job the config asks for, once, with its inputs, outputs, arguments, tags and cost.

``Plan(config)`` walks the cells' studies and adds one row per job: dense
models, IMP chains, matchings, sparse runs, interpolations,
planes and ensembles. A row's directory comes from what determines its
result (``plan.paths``, ``plan.keys``), so when two experiments ask for the
same run they get the same row: it is trained once, its users merged (a dense
run keeps the union of the rewind checkpoints they need, an IMP chain the
union of their target sparsities: the rounds on the way to a target do not
depend on the other targets). The Snakemake rules are thin: one rule per job
kind, whose input and parameter functions look the row up; fused execution
is a grouping of the same rows (``dense_groups``, ``sparse_groups``).

The branch facts (which dense model a branch rewinds to, which transforms of
mask and weights need which inputs) are ``sparsebasin.branches``'s records; the seeds follow docs/workflow.md:
for seed index s, dense A uses 2s and B 2s+1, IMP of A_s 2s, every sparse run
of s 1000+s (the three branches see the same batches), a diversity member j
1000+j.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from .. import branches, registry
from ..options import section_argv, section_key
from ..pruning.schedule import IMPOptions, fmt_sparsity, imp_schedule, lineage
from ..symmetry.align import MatchOptions
from ..symmetry.landscape import EvalOptions
from ..training.config import TrainConfig
from . import paths, resources
from .cells import Cell, cells
from .config import ConfigError
from .keys import ft_section, key, train_settings

GROUPS = branches.GROUPS  # diversity groups (Table 1)
TIDY = ("runs", "matches", "lmc_curves", "lmc_barriers", "imp_curves", "imp_barriers", "plane", "ensembles", "early")
RUN_FILES = ("final.pt", "result.json", "metrics.csv", "predictions.pt")
PRUNE_TARGET_FILES = ("mask.pt", "sparsity.json", "model.pt", "result.json", "predictions.pt")


def dense_seed(seed: int, net: str) -> int:
    return 2 * int(seed) + (1 if net == "B" else 0)


def sparse_seed(seed: int) -> int:
    return 1000 + int(seed)


def q(value) -> str:
    return shlex.quote(str(value))


# The workflow's IMP is the paper's IMP-FT in one chain (``--mode ft --chain``): not a config setting.
WORKFLOW_IMP = ("mode",)


def _evaluation(sec: dict) -> dict:
    """The evaluation options (``symmetry.landscape.EvalOptions``) a study section sets: key material and the
    step's options, only when set, so the directories of runs that set none keep their keys."""
    return section_key(EvalOptions, sec)


def tag_args(tags: dict) -> str:
    return " ".join(f"--tag {q(f'{k}={v}')}" for k, v in tags.items() if v is not None)


@dataclass
class Job:
    """One row: a job of the workflow (``path`` is its directory, or its file for an ensemble)."""

    kind: str
    path: str
    cell: Cell
    width: int
    outputs: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    spec: dict = field(default_factory=dict)
    uses: set = field(default_factory=set)  # (experiment, study) pairs that need it
    epochs: float = 1.0  # what it costs, in training epochs of its model

    @property
    def dataset(self) -> str:
        return self.cell.dataset

    @property
    def model(self) -> str:
        return self.cell.model


@dataclass
class FusedJob:
    """Several rows of one kind trained by one ``fused`` process (a grouping, not a new kind of run)."""

    name: str  # the Snakemake rule's name
    log_name: str
    group: str  # the directory the group's runs share ({cell}/d{key})
    jobs: list[Job]
    args: str

    @property
    def inputs(self) -> list[str]:
        return sorted({f for j in self.jobs for f in j.inputs})

    @property
    def outputs(self) -> list[str]:
        return [f for j in self.jobs for f in j.outputs]

    @property
    def log(self) -> str:
        return paths.log_path(self.group, self.log_name)

    @property
    def benchmark(self) -> str:
        return paths.benchmark_path(self.group, self.log_name)


def _fused_name(kind: str, group: str, *suffix: str) -> str:
    cell, dkey = group.split("/")[-2:]
    return "_".join([f"{kind}_fused", re.sub(r"\W", "_", cell), dkey, *suffix])


class Plan:
    """Every job of the config, keyed by kind and path; the experiments' views of them."""

    def __init__(self, config: dict):
        self.config = config
        self._fused: list[FusedJob] | None = None
        self.cells = cells(config)
        self.device = config["device"]
        self.data_dir = config["data_dir"]
        self.precision = config["precision"]
        self.measured = resources.load_throughput(config["throughput"]) if config.get("throughput") else {}
        self.jobs: dict[str, dict[str, Job]] = {k: {} for k in (
            "dense", "prune", "match", "sparse", "lmc", "imp_barrier", "plane", "ensemble")}
        self.tidy: dict[str, dict[str, list[str]]] = {exp: {t: [] for t in TIDY} for exp in config["experiments"]}
        self.width_files: dict[tuple, list[str]] = {}
        self._key_cache: dict = {}
        self._materials: dict[str, str] = {}
        self._after: list = []  # studies that need every user's targets merged first (IMP lineages)
        for cell in self.cells:
            self._add_cell(cell)
        for fn in self._after:
            fn()
        for exp in self.tidy:
            for table in self.tidy[exp]:
                self.tidy[exp][table] = list(dict.fromkeys(self.tidy[exp][table]))

    # ------------------------------------------------------------- keys --
    def _material(self, cell: Cell, width: int) -> dict:
        model = {"name": cell.model, "width": int(width), **cell.raw.get("model_args", {})}
        procs = int(cell.raw.get("gpus_per_run", 1))  # data-parallel runs round (and normalise BN) otherwise
        parallel = {"processes": procs, **({"sync_bn": True} if cell.raw.get("sync_bn") else {})} if procs > 1 else {}
        return {"dataset": cell.dataset, "model": model, "train_subset": cell.raw.get("train_subset"),
                "dense": train_settings(cell.dense, self.precision), "device": self.device, **parallel}

    def _keys(self, cell: Cell, width: int) -> dict[str, str]:
        cached = self._key_cache.get((id(cell), width))
        if cached is None:
            cached = self._key_cache[(id(cell), width)] = self._compute_keys(cell, width)
        return cached

    def _compute_keys(self, cell: Cell, width: int) -> dict[str, str]:
        dk = self._key(self._material(cell, width))
        p = cell.raw["prune"]
        prune = {**section_key(IMPOptions, p, skip=WORKFLOW_IMP), "augment": cell.dense.get("augment", "auto"),
                 "ft": train_settings(ft_section(p), self.precision)}
        pk = self._key({"dense": dk, "prune": prune})
        sparse = train_settings({**cell.sparse, "epochs": cell.T}, self.precision, drop=("epochs",))
        keys = {"dense": dk, "prune": pk}
        for i, method in enumerate(cell.methods):  # the first method's keys are the cell's (as with one method)
            match = {**section_key(MatchOptions, cell.raw["match"], skip=("method",)), "method": method}
            mk = self._key({"dense": dk, "match": match})
            sk = self._key({"dense": dk, "prune": pk, "match": mk, "sparse": sparse})
            keys.update({f"match:{method}": mk, f"sparse:{method}": sk})
            if i == 0:
                keys.update(match=mk, sparse=sk)
        return keys

    def _key(self, material: dict) -> str:
        """key(material), refusing the (about 1e-5) chance that two settings share one directory."""
        k = key(material)
        text = json.dumps(material, sort_keys=True, default=str)
        if self._materials.setdefault(k, text) != text:
            raise ConfigError(f"two different run settings hash to the key {k}; change any value of one of them "
                             "(e.g. a seed) and report this")
        return k

    def _seed_dir(self, cell: Cell, width: int, seed: int) -> str:
        return paths.seed_dir(cell.dataset, cell.model, width, self._keys(cell, width)["dense"], seed)

    # ------------------------------------------------------------- rows --
    def _row(self, kind: str, path: str, cell: Cell, width: int, use: tuple, **spec) -> Job:
        table = self.jobs[kind]
        job = table.get(path)
        if job is None:
            job = table[path] = Job(kind, path, cell, int(width), spec=spec)
        job.uses.add(use)
        return job

    @staticmethod
    def _method_tag(cell: Cell, method: str) -> dict:
        """``method`` when the cell compares several matching methods (one method: no tag, as before)."""
        return {"method": method} if len(cell.methods) > 1 else {}

    def _tags(self, cell: Cell, width: int, **extra) -> dict:
        return {"dataset": cell.dataset, "model": cell.model, "width": str(width),
                **{k: str(v) for k, v in extra.items() if v is not None}}

    def dense(self, cell: Cell, width: int, seed: int, net: str, use: tuple) -> Job:
        d = f"{self._seed_dir(cell, width, seed)}/dense/{net}"
        job = self._row("dense", d, cell, width, use, seed=seed, net=net, save_epochs=set(),
                        tags=self._tags(cell, width, seed=seed, branch="dense", net=net))
        job.spec["save_epochs"].update(cell.save_epochs())
        job.outputs = [f"{d}/{f}" for f in RUN_FILES]
        job.inputs = [self.data_stamp(cell.dataset)]
        job.epochs = cell.T
        return job

    def dense_file(self, cell: Cell, width: int, seed: int, net: str, name: str, use: tuple) -> str:
        return f"{self.dense(cell, width, seed, net, use).path}/{name}"

    def checkpoint(self, cell: Cell, width: int, seed: int, net: str, epoch: int, use: tuple) -> tuple[str, str]:
        """(rewind checkpoint path, the file a job depends on to have it: the run's final.pt)."""
        job = self.dense(cell, width, seed, net, use)
        if epoch == cell.T:
            return f"{job.path}/final.pt", f"{job.path}/final.pt"
        return f"{job.path}/ckpt/epoch{epoch}.pt", f"{job.path}/final.pt"

    def prune(self, cell: Cell, width: int, seed: int, use: tuple) -> Job:
        k = self._keys(cell, width)
        d = f"{self._seed_dir(cell, width, seed)}/prune-{k['prune']}"
        job = self._row("prune", d, cell, width, use, seed=seed, targets=set(),
                        tags=self._tags(cell, width, seed=seed, branch="imp"))
        job.spec["targets"].update(cell.prune_targets())
        job.inputs = [self.data_stamp(cell.dataset), self.dense_file(cell, width, seed, "A", "final.pt", use)]
        return job

    def mask(self, cell: Cell, width: int, seed: int, sparsity: float, use: tuple) -> str:
        return f"{self.prune(cell, width, seed, use).path}/S{fmt_sparsity(sparsity)}/mask.pt"

    def match(self, cell: Cell, width: int, seed: int, use: tuple, variant: str | None = None,
              other: int | None = None, method: str | None = None) -> Job:
        """The matching of A to B (``method``: one of the cell's methods, default its first)."""
        k = self._keys(cell, width)
        method = method or cell.methods[0]
        d = f"{self._seed_dir(cell, width, seed)}/match-{k['match:' + method]}" + (
            f"/{paths.variant(variant, other).rstrip('/')}" if variant else "")
        T = cell.T
        if variant == "early":
            a_at = other if cell.match_a == "same" else T
            a, a_dep = self.checkpoint(cell, width, seed, "A", a_at, use)
            b, b_dep = self.checkpoint(cell, width, seed, "B", other, use)
            tags = self._tags(cell, width, seed=seed, match_epoch=other)
        elif variant == "cross":
            a, a_dep = self.checkpoint(cell, width, seed, "A", T, use)
            b, b_dep = self.checkpoint(cell, width, other, "B", T, use)
            tags = self._tags(cell, width, seed=seed, b_seed=other)
        else:
            a, a_dep = self.checkpoint(cell, width, seed, "A", T, use)
            b, b_dep = self.checkpoint(cell, width, seed, "B", T, use)
            tags = self._tags(cell, width, seed=seed)
        tags.update(self._method_tag(cell, method))
        job = self._row("match", d, cell, width, use, a=a, b=b, method=method, tags=tags)
        job.inputs = [self.data_stamp(cell.dataset), a_dep, b_dep]
        job.outputs = [f"{d}/perm.pt", f"{d}/perm.json"]
        return job

    def sparse(self, cell: Cell, width: int, seed: int, sparsity: float, k: int, branch: str, use: tuple,
               variant: str | None = None, other: int | None = None, method: str | None = None) -> Job:
        """A sparse run: the standard branches of seed ``seed``; ``cross`` (naive/permuted on B_other with
        pi from A_seed to B_other), ``dataorder`` (lth with member other's data order), ``early``
        (permuted with pi from B at epoch ``other``). A branch that uses the matching is run with
        ``method`` (one of the cell's, default its first); the others do not depend on it."""
        keys = self._keys(cell, width)
        b = branches.get(branch)
        method = (method or cell.methods[0]) if b.needs_permutation else None
        S = fmt_sparsity(sparsity)
        d = (f"{self._seed_dir(cell, width, seed)}/sparse-{keys['sparse:' + method] if method else keys['sparse']}/"
             f"{paths.variant(variant, other)}S{S}/k{k}/{branch}")
        init_seed = other if variant == "cross" else seed
        init, init_dep = self.checkpoint(cell, width, init_seed, b.rewind, k, use)
        mask = self.mask(cell, width, seed, sparsity, use)
        perm = None  # pi(m_A) is made in the run's own job, from m_A and the matching's pi
        if b.needs_permutation:
            perm = self.match(cell, width, seed, use, *((variant, other) if variant in ("cross", "early") else ()),
                              method=method).outputs[0]
        signs = signs_dep = None  # A's rewind checkpoint, whose signs the run's init takes
        if b.needs_signs:
            signs, signs_dep = self.checkpoint(cell, width, seed, "A", k, use)
        if variant in ("cross", "dataorder"):
            tags = self._tags(cell, width, seed=seed, sparsity=S, k=k, branch=branch, member=other)
            data_seed = sparse_seed(other)
        else:
            epoch = other if variant == "early" else (cell.T if branch == "permuted" else None)
            tags = self._tags(cell, width, seed=seed, sparsity=S, k=k, branch=branch, match_epoch=epoch)
            data_seed = sparse_seed(seed)
        if method:
            tags.update(self._method_tag(cell, method))
        job = self._row("sparse", d, cell, width, use, init=init, mask=mask, perm=perm, signs=signs, branch=branch,
                        k=int(k), data_seed=data_seed, tags=tags)
        job.inputs = list(dict.fromkeys([self.data_stamp(cell.dataset), init_dep, mask] + ([perm] if perm else [])
                                        + ([signs_dep] if signs_dep else [])))
        job.outputs = [f"{d}/{f}" for f in RUN_FILES]
        job.epochs = cell.T - int(k)
        return job

    # ------------------------------------------------------------ studies --
    def _add_cell(self, cell: Cell) -> None:
        exp, T = cell.experiment, cell.T
        tidy = self.tidy[exp]

        def add(table: str, width: int, *files: str) -> None:
            tidy[table].extend(files)
            self.width_files.setdefault((exp, cell.name, width), []).extend(files)

        both: set = set()
        for name in ("sweep", "lmc", "diversity", "early_matching", "plane"):
            both.update(cell.pairs(name))
        a_only = {p for p in cell.pairs("imp_barrier") if p not in both}
        def use(w, s, names):  # the studies of the cell that need (w, s)
            return [(exp, n) for n in names if (w, s) in cell.pairs(n)]

        for w, s in sorted(both):
            for net in ("A", "B"):
                for u in use(w, s, ("sweep", "lmc", "diversity", "early_matching", "plane")):
                    f = self.dense_file(cell, w, s, net, "result.json", u)
                add("runs", w, f)
        for w, s in sorted(a_only):
            add("runs", w, self.dense_file(cell, w, s, "A", "result.json", (exp, "imp_barrier")))
        pruned: set = set()
        for name in ("sweep", "imp_barrier", "plane", "diversity", "early_matching"):
            pruned.update(cell.pairs(name))
        for w, s in sorted(pruned):
            for u in use(w, s, ("sweep", "imp_barrier", "plane", "diversity", "early_matching")):
                job = self.prune(cell, w, s, u)
            for t in cell.prune_targets():
                add("runs", w, f"{job.path}/S{fmt_sparsity(t)}/result.json")

        sweep = cell.section("sweep")
        if sweep:
            for w, s in cell.pairs("sweep"):
                for S in sweep["sparsities"]:
                    for k in sweep["rewind"]:
                        for b in sweep["branches"]:
                            for method, e in self._matchings(cell, b):
                                run = self.sparse(cell, w, s, S, k, b, (exp, "sweep"), *(("early", e) if e != T
                                                                                       else ()), method=method)
                                add("runs", w, f"{run.path}/result.json")

        swept = set(cell.pairs("sweep")) if sweep and any(branches.get(b).needs_permutation
                                                           for b in sweep["branches"]) else set()
        matched = swept | set(cell.pairs("lmc")) | set(cell.pairs("plane"))
        div = cell.section("diversity")
        if div:
            matched.update((w, div["seeds"][0]) for w in div["widths"])
        early = cell.section("early_matching")
        if early and T in early["epochs"]:
            matched.update(cell.pairs("early_matching"))
        for w, s in sorted(matched):
            for u in use(w, s, ("sweep", "lmc", "plane", "diversity", "early_matching")) or [(exp, "diversity")]:
                job = self.match(cell, w, s, u)
            add("matches", w, job.outputs[1])
            for method in cell.methods[1:] if (w, s) in swept or (w, s) in cell.pairs("lmc") else ():
                add("matches", w, self.match(cell, w, s, (exp, "sweep"), method=method).outputs[1])

        lmc = cell.section("lmc")
        if lmc:
            for w, s in cell.pairs("lmc"):
                for method in cell.methods:  # the barrier after each method's matching
                    job = self._lmc(cell, w, s, lmc, (exp, "lmc"), method)
                    add("lmc_curves", w, job.outputs[0])
                    add("lmc_barriers", w, job.outputs[1])

        ib = cell.section("imp_barrier")
        if ib:
            for w, s in cell.pairs("imp_barrier"):
                self.prune(cell, w, s, (exp, "imp_barrier"))

            def barriers(cell=cell, ib=ib) -> None:
                for w, s in cell.pairs("imp_barrier"):
                    for job in self._imp_barrier(cell, w, s, ib, (exp, "imp_barrier")):
                        add("imp_curves", w, job.outputs[0])
                        add("imp_barriers", w, job.outputs[1])

            self._after.append(barriers)

        plane = cell.section("plane")
        if plane:
            job = self._plane(cell, plane, (exp, "plane"))
            add("plane", plane["width"], job.outputs[0])

        if div:
            for w in div["widths"]:
                for g in GROUPS:
                    add("ensembles", w, self._ensemble(cell, w, div, g, (exp, "diversity")).path)

        if early:
            for w, s in cell.pairs("early_matching"):
                for S in early["sparsities"]:
                    for e in early["epochs"]:
                        if e == T:
                            run = self.sparse(cell, w, s, S, early["k"], "permuted", (exp, "early_matching"))
                        else:
                            run = self.sparse(cell, w, s, S, early["k"], "permuted", (exp, "early_matching"),
                                              "early", e)
                        add("early", w, f"{run.path}/result.json")
                    for b in ("lth", "naive"):
                        run = self.sparse(cell, w, s, S, early["k"], b, (exp, "early_matching"))
                        add("early", w, f"{run.path}/result.json")

    def _lmc(self, cell: Cell, width: int, seed: int, sec: dict, use: tuple, method: str | None = None) -> Job:
        method = method or cell.methods[0]
        match = self.match(cell, width, seed, use, method=method)
        evaluation = _evaluation(sec)
        k = key({"match": self._keys(cell, width)["match:" + method], "alphas": sec["alphas"], "modes": sec["modes"],
                 **evaluation})
        d = f"{self._seed_dir(cell, width, seed)}/lmc-{k}"
        job = self._row("lmc", d, cell, width, use, a=match.spec["a"], b=match.spec["b"], perm=match.outputs[0],
                        alphas=sec["alphas"], modes=sec["modes"], evaluation=evaluation,
                        tags={**self._tags(cell, width, seed=seed), **self._method_tag(cell, method)})
        job.inputs = [self.data_stamp(cell.dataset), *match.inputs[1:], match.outputs[0]]
        job.outputs = [f"{d}/curve.csv", f"{d}/barriers.json"]
        job.epochs = 0.3 * sec["alphas"] * len(sec["modes"])
        return job

    def _imp_barrier(self, cell: Cell, width: int, seed: int, sec: dict, use: tuple) -> list[Job]:
        prune = self.prune(cell, width, seed, use)
        target, evaluation = sec["sparsity"], _evaluation(sec)
        k = key({"prune": self._keys(cell, width)["prune"], "target": target, "alphas": sec["alphas"],
                 "modes": sec["modes"], **evaluation})
        d = f"{self._seed_dir(cell, width, seed)}/impb-{k}"
        a = self.dense_file(cell, width, seed, "A", "final.pt", use)
        chain = f"{prune.path}/S{fmt_sparsity(target)}/model.pt"  # the round checkpoints exist once it does
        jobs = []
        for i, (r, s_round) in enumerate(self.imp_lineage(prune, target)):
            job = self._row("imp_barrier", f"{d}/round{r}", cell, width, use, a=a,
                            b=f"{prune.path}/rounds/round{r}.pt", alphas=sec["alphas"], modes=sec["modes"],
                            evaluation=evaluation,
                            tags=self._tags(cell, width, seed=seed, sparsity=fmt_sparsity(target), branch="imp",
                                            round=r, imp_iteration=i + 1, round_sparsity=fmt_sparsity(s_round)))
            job.inputs = [self.data_stamp(cell.dataset), a, chain]
            job.outputs = [f"{d}/round{r}.csv", f"{d}/round{r}.json"]
            job.epochs = 0.3 * sec["alphas"] * len(sec["modes"])
            jobs.append(job)
        return jobs

    @staticmethod
    def _matchings(cell: Cell, branch: str) -> list[tuple[str | None, int]]:
        """(method, epoch of B matched) of each run a sweep makes of ``branch``: every method and matching epoch
        of the cell for a branch that uses the matching, once otherwise."""
        if not branches.get(branch).needs_permutation:
            return [(None, cell.T)]
        return [(m, e) for m in cell.methods for e in cell.section("sweep")["match_epochs"]]

    def imp_lineage(self, prune: Job, target: float) -> list[tuple[int, float]]:
        """[(round, sparsity)] from the first IMP round to the one that lands on ``target``, in the chain the
        prune directory actually runs (the union of every user's targets)."""
        sched = imp_schedule(sorted(prune.spec["targets"]), prune.cell.raw["prune"]["rate"], chain=True)
        by_round = {r.round: r for r in sched}
        branch = next(r.round for r in sched if r.kind == "branch" and r.target == target)
        return [(r, by_round[r].sparsity) for r in lineage(sched, branch)]

    def _plane(self, cell: Cell, sec: dict, use: tuple) -> Job:
        w, s, S, k = sec["width"], sec["seed"], sec["sparsity"], sec["k"]
        lth = self.sparse(cell, w, s, S, k, "lth", use)
        perm = self.sparse(cell, w, s, S, k, "permuted", use)
        match = self.match(cell, w, s, use)
        evaluation = _evaluation(sec)
        key_ = key({"sparse": self._keys(cell, w)["sparse"], "grid": sec["grid"], **evaluation})
        d = f"{self._seed_dir(cell, w, s)}/plane-{key_}/S{fmt_sparsity(S)}/k{k}"
        origin = self.dense_file(cell, w, s, "A", "final.pt", use)
        job = self._row("plane", d, cell, w, use, origin=origin, p1=f"{lth.path}/final.pt",
                        p2=f"{perm.path}/final.pt", perm=match.outputs[0], grid=sec["grid"], evaluation=evaluation,
                        tags=self._tags(cell, w, seed=s, sparsity=fmt_sparsity(S), k=k))
        job.inputs = [self.data_stamp(cell.dataset), origin, f"{lth.path}/final.pt", f"{perm.path}/final.pt",
                      match.outputs[0]]
        job.outputs = [f"{d}/plane.csv"]
        job.epochs = 0.1 * sec["grid"] ** 2
        return job

    def _ensemble(self, cell: Cell, width: int, sec: dict, group: str, use: tuple) -> Job:
        exp, anchor, S, k = cell.experiment, sec["seeds"][0], sec["sparsity"], sec["k"]
        path = paths.ensemble_path(exp, f"{cell.dataset}-{cell.model}", width, fmt_sparsity(S), k, group)
        members = []
        for j in sec["seeds"]:
            if group == "dense":
                members.append(self.dense_file(cell, width, j, "A", "predictions.pt", use))
            elif group == "imp":
                members.append(f"{self.prune(cell, width, j, use).path}/S{fmt_sparsity(S)}/predictions.pt")
            elif j == anchor:
                members.append(f"{self.sparse(cell, width, anchor, S, k, group, use).path}/predictions.pt")
            elif branches.get(group).rewind == "A":  # A1's init and mask: the members differ in data order
                members.append(f"{self.sparse(cell, width, anchor, S, k, group, use, 'dataorder', j).path}"
                               "/predictions.pt")
            else:  # on each B_j
                members.append(f"{self.sparse(cell, width, anchor, S, k, group, use, 'cross', j).path}"
                               "/predictions.pt")
        job = self._row("ensemble", path, cell, width, use, group=group,
                        tags=self._tags(cell, width, sparsity=fmt_sparsity(S), k=k, branch=group))
        job.inputs = members
        job.outputs = [path]
        return job

    # ------------------------------------------------------------ helpers --
    def data_stamp(self, dataset: str) -> str:
        return f"{self.data_dir}/.sparsebasin/{dataset}.prepared.json"

    def experiments(self) -> list[str]:
        return list(self.config["experiments"])

    def cells_of(self, exp: str) -> list[Cell]:
        return [c for c in self.cells if c.experiment == exp]

    def has_study(self, exp: str, name: str) -> bool:
        return any(c.section(name) for c in self.cells_of(exp))

    def sweep_union(self, exp: str, what: str) -> list:
        out: set = set()
        for c in self.cells_of(exp):
            if c.section("sweep"):
                out.update(c.section("sweep")[what])
        return sorted(out)

    def prune_target_sets(self) -> dict[tuple, list[str]]:
        """Each distinct target set -> the prune directories that produce it (one Snakemake rule each)."""
        out: dict[tuple, list[str]] = {}
        for job in self.jobs["prune"].values():
            out.setdefault(tuple(sorted(job.spec["targets"])), []).append(job.path)
        return out

    def prune_outputs(self, job: Job) -> list[str]:
        return [f"{job.path}/S{fmt_sparsity(t)}/{f}" for t in sorted(job.spec["targets"]) for f in PRUNE_TARGET_FILES]

    # -------------------------------------------------------- arguments --
    def data_args(self, cell: Cell) -> str:
        a = f"--dataset {cell.dataset} --data-dir {q(self.data_dir)}"
        if "train_subset" in cell.raw:
            a += f" --train-subset {cell.raw['train_subset']}"
        return a

    def model_args(self, cell: Cell, width: int) -> str:
        a = f"--model {cell.model} --width {width}"
        for k, v in cell.raw.get("model_args", {}).items():
            a += f" --{k} {v}"
        return a

    @staticmethod
    def option_args(section: dict, prefix: str = "", skip: tuple = ("epochs", "precision")) -> str:
        """``--{prefix}name value`` for every TrainConfig option the config section sets (as ``{prefix}name``),
        in declaration order: the step parses exactly these declarations back."""
        return section_argv(TrainConfig, section, prefix=prefix, skip=skip)

    def optim_args(self, opt: dict, epochs: int) -> str:
        return f"--preset {opt['preset']} --epochs {epochs}{self.option_args(opt)} --precision {self.precision}"

    def run_args(self) -> str:
        """The device: the one run setting that is part of a run's key (``run_only_args`` has the others)."""
        return f"--device {self.device}"

    def run_only_args(self, training: bool = True) -> str:
        """Settings that never change which run a job makes: progress lines, tracking, and (``deterministic``,
        ``compile``) how reproducible or fast its kernels are. The rules put them on the command line outside
        Snakemake's params, so toggling one never reruns a finished job (threads likewise: ``{threads}``)."""
        a = " --deterministic" if self.config.get("deterministic") else ""
        if not training:
            return a
        a += " --progress log --rebuild-stale" + self.tracker_args()
        if self.config.get("compile", "none") != "none":
            a += f" --compile {self.config['compile']}"
            if self.config.get("compile_cache"):
                a += f" --compile-cache {q(self.config['compile_cache'])}"
        return a

    def tracker_args(self) -> str:
        """The config's tracking (training steps and the scorecard); empty when off."""
        t = self.config.get("tracking") or {}
        if t.get("backend", "none") == "none":
            return ""
        return (f" --tracker {t['backend']} --tracker-dir {q(t.get('dir', 'results/tracking'))}"
                f" --tracker-project {q(t.get('project', 'sparsebasin'))} --tracker-mode {t.get('mode', 'offline')}"
                + (f" --tracker-timeout {t['timeout']}" if "timeout" in t else ""))

    @staticmethod
    def evaluation_args(spec: dict) -> str:
        """The evaluation options an LMC, IMP-barrier or plane row's study section set (``EvalOptions``)."""
        return section_argv(EvalOptions, spec["evaluation"])

    def save_epochs_arg(self, job: Job) -> str:
        return f"--save-epochs {','.join(map(str, sorted(job.spec['save_epochs']))) or q('')}"

    def args(self, job: Job) -> str:
        """The step's command line for ``job`` (without --threads and its outputs)."""
        a = self._step_args(job)
        return f"{a} --sync-bn" if self.processes(job) > 1 and job.cell.raw.get("sync_bn") else a

    def _step_args(self, job: Job) -> str:
        cell, w, s = job.cell, job.width, job.spec
        if job.kind == "dense":
            return " ".join([self.data_args(cell), self.model_args(cell, w), self.optim_args(cell.dense, cell.T),
                             self.run_args(), f"--seed {dense_seed(s['seed'], s['net'])}", self.save_epochs_arg(job),
                             tag_args(s["tags"])])
        if job.kind == "prune":
            p = cell.raw["prune"]
            a = (f"--checkpoint {q(job.inputs[1])} {self.data_args(cell)} "
                 f"--targets {','.join(fmt_sparsity(t) for t in sorted(s['targets']))}"
                 f"{section_argv(IMPOptions, p, skip=WORKFLOW_IMP)} --mode ft --chain --ft-preset {p['ft_preset']}"
                 + self.option_args(p, "ft-", skip=("augment", "precision"))  # the fine-tuning's own options
                 + self.option_args({k: v for k, v in cell.dense.items() if k == "augment"}))  # augments as A did
            return (f"{a} --precision {self.precision} {self.run_args()} --seed {dense_seed(s['seed'], 'A')} "
                    f"{tag_args(s['tags'])}")
        if job.kind == "match":
            # the method is an axis of the cell: each job passes its own
            return (f"--a {q(s['a'])} --b {q(s['b'])} {self.data_args(cell)} --method {s['method']}"
                    f"{section_argv(MatchOptions, cell.raw['match'], skip=('method',))} {self.run_args()} "
                    f"{tag_args(s['tags'])}")
        if job.kind == "sparse":
            perm = f" --mask-permutation {q(s['perm'])}" if s["perm"] else ""
            perm += f" --signs-from {q(s['signs'])}" if s["signs"] else ""
            return " ".join([f"--init {q(s['init'])} --mask {q(s['mask'])}{perm} --branch {s['branch']}",
                             self.data_args(cell), self.optim_args(cell.sparse, cell.T - s["k"]), self.run_args(),
                             f"--seed {s['data_seed']}", tag_args(s["tags"])])
        if job.kind in ("lmc", "imp_barrier"):
            perm = f" --permutation {q(s['perm'])}" if job.kind == "lmc" else ""
            return (f"--a {q(s['a'])} --b {q(s['b'])}{perm} {self.data_args(cell)} --alphas {s['alphas']} "
                    f"--modes {','.join(s['modes'])}{self.evaluation_args(s)} {self.run_args()} "
                    f"{tag_args(s['tags'])}")
        if job.kind == "plane":
            return (f"--origin {q(s['origin'])} --p1 {q(s['p1'])} --p2 {q(s['p2'])} --p2-permutation {q(s['perm'])}"
                    f" --inverse {self.data_args(cell)} --grid {s['grid']}{self.evaluation_args(s)} "
                    f"{self.run_args()} {tag_args(s['tags'])}")
        if job.kind == "ensemble":
            return f"--predictions {' '.join(q(p) for p in job.inputs)} --group {s['group']} {tag_args(s['tags'])}"
        raise KeyError(job.kind)

    # ---------------------------------------------------------- resources --
    DATA_PARALLEL = ("dense", "prune", "sparse")  # the rows whose steps (distributed.STEPS) run on torch.distributed

    def processes(self, job: Job) -> int:
        """Processes of the job's run: the cell's gpus_per_run for dense, prune and sparse rows, else one."""
        return int(job.cell.raw.get("gpus_per_run", 1)) if job.kind in self.DATA_PARALLEL else 1

    def launcher(self, job: Job) -> str:
        """How the rule starts the step: one process, or torchrun with one process per GPU."""
        n = self.processes(job)
        if n == 1:
            return "python -m sparsebasin"
        return f"python -m torch.distributed.run --standalone --nproc_per_node {n} -m sparsebasin"

    def threads_each(self, job: Job) -> int:
        """torch threads of each of the job's processes."""
        return int(job.cell.raw.get("threads", self.config["threads"]))

    def threads(self, job: Job) -> int:
        """CPUs the job asks for: every process's threads."""
        return self.threads_each(job) * self.processes(job)

    def runtime(self, job: Job, attempt: int, epochs: float | None = None) -> int:
        if job.kind == "ensemble":
            return resources.light_runtime(attempt)
        if job.kind == "prune":
            epochs = len(imp_schedule(sorted(job.spec["targets"]), job.cell.raw["prune"]["rate"])) * \
                job.cell.raw["prune"]["ft_epochs"]
        epochs = job.epochs if epochs is None else epochs
        return resources.train_minutes(job.model, job.dataset, job.width, epochs / self.processes(job),
                                       attempt, self.device, self.config["runtime_factor"],
                                       max_runtime=self.config.get("max_runtime", resources.MAX_RUNTIME),
                                       measured=self.measured)

    def fused_epochs(self, jobs: list[Job]) -> float:
        return resources.fused_epochs(jobs[0].epochs, len(jobs))

    def mem_mb(self, job: Job, attempt: int, runs: int = 1) -> int:
        """Host memory of ``job``, or of a fused job of ``runs`` runs like it."""
        if job.kind == "ensemble":
            return resources.light_mem(attempt)
        return self.processes(job) * resources.train_mem(job.model, job.dataset, job.width, attempt, self.device,
                                                         runs=runs)

    # ------------------------------------------------------------ fused --
    def dense_groups(self) -> dict[str, list[Job]]:
        """Fused dense jobs: every dense run of one dense setting and width (A and B of every seed)."""
        out: dict[str, list[Job]] = {}
        for job in self.jobs["dense"].values():
            out.setdefault(job.path.split("/seed")[0], []).append(job)
        return {g: sorted(js, key=lambda j: (j.spec["seed"], j.spec["net"])) for g, js in sorted(out.items())}

    def sparse_groups(self) -> dict[tuple[str, int], list[Job]]:
        """Fused sparse jobs: every sparse run of one setting, width and rewind point k."""
        out: dict[tuple, list[Job]] = {}
        for job in self.jobs["sparse"].values():
            out.setdefault((job.path.split("/seed")[0], job.spec["k"]), []).append(job)
        return dict(sorted(out.items()))

    def fused_chunks(self, jobs: list[Job], opt: dict) -> list[list[Job]]:
        """A group's fused jobs: near-equal chunks no larger than the memory budget allows
        (``fused_memory_mb``); runs of an architecture or width that is not fused, data-parallel
        runs, and runs left alone in a chunk are trained by the plain rule (exactly what a separate run is)."""
        first = jobs[0]
        widths = first.cell.raw.get("fused_widths")
        if not registry.architecture(first.model)["fused"] or (widths is not None and first.width not in widths):
            return []
        if self.processes(first) > 1:  # a data-parallel run has its own processes (the fused step is one)
            return []
        size = resources.fused_group_size(first.model, first.width, int(opt.get("batch_size", 128)),
                                          int(self.config.get("fused_memory_mb", 0))) or len(jobs)
        n = -(-len(jobs) // size)
        chunks = [jobs[i * len(jobs) // n:(i + 1) * len(jobs) // n] for i in range(n)]
        return [c for c in chunks if len(c) >= 2]

    def fused_jobs(self) -> list[FusedJob]:
        """Every fused job (``fused: true``): the dense groups, then the sparse groups, each one rule
        (``_part{i}`` when the memory budget splits a group)."""
        if self._fused is None:
            out = []
            for kind, groups in (("dense", {(g, None): js for g, js in self.dense_groups().items()}),
                                 ("sparse", self.sparse_groups())):
                for (g, k), js in groups.items():
                    opt = js[0].cell.dense if kind == "dense" else {**js[0].cell.dense, **js[0].cell.sparse}
                    chunks = self.fused_chunks(js, opt)
                    for i, chunk in enumerate(chunks):
                        suffix = ([f"k{k}"] if k is not None else []) + ([f"part{i}"] if len(chunks) > 1 else [])
                        args = self.fused_dense_args(chunk) if kind == "dense" else self.fused_sparse_args(chunk)
                        out.append(FusedJob(_fused_name(kind, g, *suffix), "_".join([f"{kind}_fused", *suffix]),
                                            g, chunk, args))
            self._fused = out
        return self._fused

    def unfused(self, kind: str) -> bool:
        """Whether some ``kind`` row is not in a fused job (then its plain rule is needed too)."""
        fused = {j.path for fj in self.fused_jobs() for j in fj.jobs}
        return any(j.path not in fused for j in self.jobs[kind].values())

    def run_spec(self, job: Job) -> str:
        """One run of a fused job as ``--run out_dir=...,init=...,tag.K=V``."""
        s = job.spec
        parts = [f"out_dir={job.path}"]
        if job.kind == "dense":
            seed = dense_seed(s["seed"], s["net"])
            parts += [f"seed={seed}", f"data_seed={seed}"]
        else:
            parts += [f"init={s['init']}", f"mask={s['mask']}"] + ([f"mask_permutation={s['perm']}"] if s["perm"] else [])
            parts += [f"signs_from={s['signs']}"] if s["signs"] else []
            parts += [f"branch={s['branch']}", f"seed={s['data_seed']}", f"data_seed={s['data_seed']}"]
        parts += [f"tag.{k}={v}" for k, v in s["tags"].items()]
        text = ",".join(parts)
        if any("," in p.split("=", 1)[1] for p in parts):
            raise ValueError(f"fused run {job.path}: a value contains a comma, which --run cannot carry")
        return f"--run {q(text)}"

    def fused_dense_args(self, jobs: list[Job]) -> str:
        first = jobs[0]
        save = {e for j in jobs for e in j.spec["save_epochs"]}
        return " ".join([self.data_args(first.cell), self.model_args(first.cell, first.width),
                         self.optim_args(first.cell.dense, first.cell.T), self.run_args(),
                         f"--save-epochs {','.join(map(str, sorted(save))) or q('')}",
                         *(self.run_spec(j) for j in jobs)])

    def fused_sparse_args(self, jobs: list[Job]) -> str:
        first = jobs[0]
        return " ".join([self.data_args(first.cell), self.optim_args(first.cell.sparse, first.cell.T - first.spec["k"]),
                         self.run_args(), *(self.run_spec(j) for j in jobs)])
