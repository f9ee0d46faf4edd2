# Shared helpers of the workflow: config validation, the plan (which runs each
# experiment needs), path builders, command-line arguments and resources.
#
# Everything here is plain Python evaluated at parse time. It must stay light:
# no torch, no sparsebasin imports (a dry run of the whole paper parses this).

import math
import os
import sys

from snakemake.exceptions import WorkflowError

# --------------------------------------------------------------------------- constants

DATASETS = ("mnist1d", "cifar10", "cifar100", "svhn", "imagenet")
MODELS = ("mlp", "vgg11", "resnet20", "resnet50")
DOWNLOADABLE = ("cifar10", "cifar100", "svhn")  # fetched by the download step (login node)
BRANCHES = ("lth", "naive", "permuted")
GROUPS = ("dense", "imp", "lth", "naive", "permuted")  # diversity groups (Table 1)
SECTIONS = ("sweep", "lmc", "imp_barrier", "plane", "diversity", "early_matching")

# figure name -> (figure kind, --metric or None, study that enables it, tidy table it reads)
FIGURES = {
    "accuracy_vs_rewind": ("accuracy_vs_rewind", "test_acc", "sweep", "runs"),
    "accuracy_vs_rewind_top5": ("accuracy_vs_rewind", "test_top5", "sweep", "runs"),
    "accuracy_vs_sparsity": ("accuracy_vs_sparsity", "test_acc", "sweep", "runs"),
    "accuracy_vs_sparsity_top5": ("accuracy_vs_sparsity", "test_top5", "sweep", "runs"),
    "lmc_width": ("lmc_width", None, "lmc", "lmc_curves"),
    "imp_barrier": ("imp_barrier", None, "imp_barrier", "imp_curves"),
    "plane": ("plane", None, "plane", "plane"),
}
# table kind -> (tidy table it reads, section that enables it)
TABLES = {
    "accuracy": ("runs", "sweep"),
    "diversity": ("ensembles", "diversity"),
    "early_matching": ("early", "early_matching"),
    "lmc": ("lmc_barriers", "lmc"),
}
TIDY = ("runs", "matches", "lmc_curves", "lmc_barriers", "imp_curves", "imp_barriers", "plane", "ensembles", "early")

RESULTS = "results"
CONDA_ENV = "../../envs/sparsebasin.yaml"  # relative to the rule files in workflow/rules/
GPU_SLOT = os.path.join(workflow.basedir, "workflow", "scripts", "gpu_slot.sh")


wildcard_constraints:
    experiment=r"[A-Za-z][A-Za-z0-9_]*",
    dataset="|".join(DATASETS),
    model="|".join(MODELS),
    width=r"[1-9]\d*",
    seed=r"\d+",
    other=r"\d+",
    sparsity=r"0\.\d+",
    k=r"\d+",
    epoch=r"\d+",
    round=r"[1-9]\d*",
    branch="|".join(BRANCHES),
    xbranch="naive|permuted",
    net="A|B",
    group="|".join(GROUPS),
    table="|".join(TIDY),


# --------------------------------------------------------------------------- validation


def config_error(message):
    """Stop with one line on stderr naming the config key and what to do."""
    print(f"config error: {message}", file=sys.stderr)
    raise SystemExit(1)


# The library's torch-free modules are read from this repository's src/, so the
# Snakemake process needs no installed sparsebasin (and never imports torch).
sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from sparsebasin.plan.config import ConfigError, check as _check_config  # noqa: E402


def validate_config(cfg):
    """The YAML files, numbers, schema (defaults filled in) and what a schema cannot say: plan.config."""
    schema = os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
    files = list(workflow.overwrite_configfiles) or [os.path.join(workflow.basedir, "config.yaml")]
    try:
        _check_config(cfg, schema, files)
    except ConfigError as exc:
        config_error(str(exc))


def _subset(where, values, allowed, what):
    bad = [v for v in values if v not in allowed]
    if bad:
        config_error(f"{where} lists {what} {bad[0]!r}, which is not in the cell's {what}s {list(allowed)}; "
                     f"add it to the cell or remove it here")


def _below_epochs(where, values, epochs, inclusive=False):
    for v in values:
        if (v > epochs) if inclusive else (v >= epochs):
            rel = "<=" if inclusive else "<"
            config_error(f"{where} contains {v}, but it must be {rel} dense.epochs ({epochs}); "
                         f"remove it or raise dense.epochs")


def fmt_s(s):
    """The S{s} label of a sparsity, as sparsebasin.pruning.fmt_sparsity writes it."""
    return f"{float(s):g}"


def normalise_cell(exp, i, raw):
    """Validate the cross-field rules of one cell and fill section defaults."""
    where = f"experiments.{exp}.cells[{i}]"
    cell = dict(raw)
    cell["experiment"], cell["index"] = exp, i
    cell["name"] = f"{raw['dataset']}-{raw['model']}"
    T = raw["dense"]["epochs"]
    cell["T"] = T
    widths, seeds = list(raw["widths"]), list(raw["seeds"])
    sparse = {k: v for k, v in raw["dense"].items() if k not in ("epochs", "preset")}
    sparse.update(raw["sparse"])
    cell["sparse"] = sparse
    cell["sections"] = {}
    for name in SECTIONS:
        if name not in raw:
            continue
        sec = dict(raw[name])
        w = f"{where}.{name}"
        if name == "plane":
            if sec["width"] not in widths:
                config_error(f"{w}.width = {sec['width']} is not one of the cell's widths {widths}; pick one of them")
            sec.setdefault("seed", seeds[0])
            if sec["seed"] not in seeds:
                config_error(f"{w}.seed = {sec['seed']} is not one of the cell's seeds {seeds}; pick one of them")
            sec["widths"], sec["seeds"] = [sec["width"]], [sec["seed"]]
        else:
            sec.setdefault("widths", widths)
            sec.setdefault("seeds", seeds)
            _subset(f"{w}.widths", sec["widths"], widths, "width")
            _subset(f"{w}.seeds", sec["seeds"], seeds, "seed")
        if name == "sweep":
            _below_epochs(f"{w}.rewind", sec["rewind"], T)
        if name in ("plane", "diversity", "early_matching"):
            _below_epochs(f"{w}.k", [sec["k"]], T)
        if name == "early_matching":
            _below_epochs(f"{w}.epochs", sec["epochs"], T, inclusive=True)
        cell["sections"][name] = sec
    if not cell["sections"]:
        config_error(f"{where} has no study; add at least one of: {', '.join(SECTIONS)}")
    return cell


def build_plan(cfg):
    cells, index = [], {}
    for exp, e in cfg["experiments"].items():
        for i, raw in enumerate(e["cells"]):
            cell = normalise_cell(exp, i, raw)
            for w in cell["widths"]:
                key = (exp, cell["dataset"], cell["model"], w)
                if key in index:
                    config_error(f"experiments.{exp}.cells[{i}]: {cell['dataset']} {cell['model']} width {w} already "
                                 f"appears in cells[{index[key]['index']}]; give each width to one cell only")
                index[key] = cell
            cells.append(cell)
    return cells, index


# --------------------------------------------------------------------------- plan queries

validate_config(config)
CELLS, CELL_INDEX = build_plan(config)
EXPERIMENTS = config["experiments"]
DATA_DIR = config["data_dir"]
DEVICE = config["device"]
THREADS = config["threads"]
CUDA = DEVICE == "cuda"
GPU = {"gpu": 1} if CUDA else {}


def cells_of(exp):
    return [c for c in CELLS if c["experiment"] == exp]


def cell_of(wc):
    key = (wc.experiment, wc.dataset, wc.model, int(wc.width))
    if key not in CELL_INDEX:
        raise WorkflowError(f"{wc.experiment}/{wc.dataset}-{wc.model}-w{wc.width} is not in the config "
                            f"(no cell of experiment {wc.experiment!r} has that dataset, model and width)")
    return CELL_INDEX[key]


def section(cell, name):
    return cell["sections"].get(name)


def pairs(cell, name):
    """(width, seed) pairs a section covers."""
    sec = section(cell, name)
    return [(w, s) for w in sec["widths"] for s in sec["seeds"]] if sec else []


def diversity_anchor(sec):
    return sec["seeds"][0]


def save_epochs(cell):
    """Rewind checkpoints every dense run of the cell keeps (both A and B)."""
    T = cell["T"]
    ks = set()
    for name, sec in cell["sections"].items():
        if name == "sweep":
            ks.update(sec["rewind"])
        if name in ("plane", "diversity", "early_matching"):
            ks.add(sec["k"])
        if name == "early_matching":
            ks.update(e for e in sec["epochs"] if e < T)
    return sorted(ks)


def prune_targets(cell):
    """Every target sparsity the cell's IMP chain produces."""
    ts = set()
    for name, sec in cell["sections"].items():
        if name in ("sweep", "early_matching"):
            ts.update(sec["sparsities"])
        elif name in ("imp_barrier", "plane", "diversity"):
            ts.add(sec["sparsity"])
    return sorted(ts)


# The chained IMP schedule comes from the library itself (sparsebasin.pruning.schedule
# imports neither torch nor the rest of the package).
from sparsebasin.pruning.schedule import imp_schedule as _library_imp_schedule  # noqa: E402


def imp_schedule(targets, rate):
    """[(round, sparsity, kind, parent_round)] of the chained schedule."""
    return [(r.round, r.sparsity, r.kind, r.parent) for r in _library_imp_schedule(targets, rate, chain=True)]


def imp_lineage(cell, target):
    """[(round, sparsity)] from the first IMP round to the one that lands on target."""
    sched = imp_schedule(prune_targets(cell), cell["prune"]["rate"])
    by_round = {x[0]: x for x in sched}
    r = next(x[0] for x in sched if x[2] == "branch" and x[1] == target)
    out = []
    while r:
        out.append((r, by_round[r][1]))
        r = by_round[r][3]
    return out[::-1]


# --------------------------------------------------------------------------- paths


def cell_dir(cell, width):
    return f"{RESULTS}/{cell['experiment']}/{cell['name']}-w{width}"


def run_dir(cell, width, seed):
    return f"{cell_dir(cell, width)}/seed{seed}"


def run_of(wc):
    """The seed directory of a job with experiment/dataset/model/width/seed wildcards."""
    return run_dir(cell_of(wc), wc.width, wc.seed)


def data_stamp(dataset):
    return os.path.join(DATA_DIR, ".sparsebasin", f"{dataset}.prepared.json")


def data_input(wc):
    return data_stamp(wc.dataset)


def dense_file(cell, width, seed, net, name="final.pt"):
    return f"{run_dir(cell, width, seed)}/dense/{net}/{name}"


def sparse_dir(cell, width, seed, sparsity, k, branch):
    return f"{run_dir(cell, width, seed)}/sparse/S{fmt_s(sparsity)}/k{k}/{branch}"


def member_dir(cell, width, anchor, member, sparsity, k, branch):
    """Diversity member runs: the anchor's own runs for member == anchor, otherwise
    lth with another data order or naive/permuted on another B."""
    if member == anchor:
        return sparse_dir(cell, width, anchor, sparsity, k, branch)
    if branch == "lth":
        return f"{run_dir(cell, width, anchor)}/dataorder/d{member}/sparse/S{fmt_s(sparsity)}/k{k}/lth"
    return f"{run_dir(cell, width, anchor)}/cross/B{member}/sparse/S{fmt_s(sparsity)}/k{k}/{branch}"


def early_permuted_dir(cell, width, seed, epoch, sparsity, k):
    if epoch == cell["T"]:
        return sparse_dir(cell, width, seed, sparsity, k, "permuted")
    return f"{run_dir(cell, width, seed)}/early/e{epoch}/sparse/S{fmt_s(sparsity)}/k{k}/permuted"


def exp_file(exp, *parts):
    return "/".join([RESULTS, exp, *parts])


# --------------------------------------------------------------------------- arguments


def q(value):
    """Quote one value for the shell."""
    import shlex

    return shlex.quote(str(value))


def tags(**kv):
    return " ".join(f"--tag {q(f'{k}={v}')}" for k, v in kv.items() if v is not None)


def base_tags(wc, **extra):
    cell = cell_of(wc)
    return tags(experiment=wc.experiment, dataset=cell["dataset"], model=cell["model"], width=wc.width, **extra)


def data_args(cell):
    a = f"--dataset {cell['dataset']} --data-dir {q(DATA_DIR)}"
    if "train_subset" in cell:
        a += f" --train-subset {cell['train_subset']}"
    return a


def model_args(cell, width):
    a = f"--model {cell['model']} --width {width}"
    for k, v in cell.get("model_args", {}).items():
        a += f" --{k} {v}"
    return a


OPTIM_KEYS = ("lr", "momentum", "weight_decay", "batch_size", "warmup_epochs", "augment", "schedule", "step_every",
              "step_gamma")


def optim_args(opt, epochs):
    a = f"--preset {opt['preset']} --epochs {epochs}"
    for key in OPTIM_KEYS:
        if key in opt:
            a += f" --{key.replace('_', '-')} {opt[key]}"
    return f"{a} --precision {config['precision']}"


def run_args(progress=True):
    """Device (and progress for training steps); the rules add --threads {threads}."""
    return f"--device {DEVICE}" + (" --progress log" if progress else "")


def cell_threads(wc):
    return cell_of(wc).get("threads", THREADS)


# Seeds (docs/workflow.md): for seed index s, dense A uses init/data seed 2s and
# dense B 2s+1; IMP of A_s uses 2s; every sparse run of s uses 1000+s (the three
# branches see the same batches); diversity LTH member j uses 1000+j.
def dense_seed(seed, net):
    return 2 * int(seed) + (1 if net == "B" else 0)


def sparse_seed(seed):
    return 1000 + int(seed)


# --------------------------------------------------------------------------- resources

# Minutes per training epoch at width 1 on one GPU (CPU: x CPU_SLOWDOWN), rough.
EPOCH_MINUTES = {"mlp": 0.01, "vgg11": 0.15, "resnet20": 0.15, "resnet50": 20.0}
DATASET_SCALE = {"mnist1d": 1.0, "cifar10": 1.0, "cifar100": 1.0, "svhn": 1.5, "imagenet": 1.0}
CPU_SLOWDOWN = {"mlp": 1.0, "vgg11": 30.0, "resnet20": 30.0, "resnet50": 30.0}


def epoch_minutes(cell, width):
    m = cell["model"]
    w = int(width)
    scale = w if m == "mlp" else max(1.0, (w / 2.0) ** 1.5)
    minutes = EPOCH_MINUTES[m] * DATASET_SCALE[cell["dataset"]] * scale
    if DEVICE == "cpu":
        minutes *= CPU_SLOWDOWN[m]
    return minutes


def train_minutes(cell, width, epochs, attempt, fixed=5):
    """resources.runtime (minutes) of a job costing `epochs` training epochs;
    grows with the attempt so a retried job gets more time."""
    est = fixed + epochs * epoch_minutes(cell, width)
    return int(math.ceil(est * 1.5 * config["runtime_factor"] * attempt))


def runtime(epochs_of, fixed=5):
    """resources.runtime callable for rules with the cell wildcards; epochs_of(cell, wc)."""

    def f(wc, attempt):
        cell = cell_of(wc)
        return train_minutes(cell, wc.width, epochs_of(cell, wc), attempt, fixed)

    return f


def train_mem(cell, width, attempt):
    w = int(width)
    base = {"mnist1d": 1000, "imagenet": 48000}.get(cell["dataset"], 3000)
    extra = 0 if cell["model"] == "mlp" else 200 * w * w
    return int((base + extra) * (1 + 0.5 * (attempt - 1)))


def mem_mb(wc, attempt):
    return train_mem(cell_of(wc), wc.width, attempt)


def light_mem(wc, attempt):
    return 2000 * attempt


def light_runtime(wc, attempt):
    return 10 * attempt


def gpu_wrap():
    """Prefix for commands that use the GPU: picks a free GPU on a workstation
    (no-op under SLURM, which sets CUDA_VISIBLE_DEVICES)."""
    return f"bash {q(GPU_SLOT)} " if CUDA else ""


GPU_WRAP = gpu_wrap()


# =========================================================================== per-rule helpers
# (input functions and parameters of the rules in the other .smk files)

# ----------------------------------------------------------------- data.smk


def download_stamp(dataset):
    return os.path.join(DATA_DIR, ".sparsebasin", f"{dataset}.downloaded")


def prepare_input(wc):
    return download_stamp(wc.dataset) if wc.dataset in DOWNLOADABLE else []


def data_dir_of(output):
    """The data directory, from a stamp path {data_dir}/.sparsebasin/<file>."""
    return os.path.dirname(os.path.dirname(str(output)))


# ----------------------------------------------------------------- dense.smk


def dense_params(wc):
    cell = cell_of(wc)
    return " ".join(
        [
            data_args(cell),
            model_args(cell, wc.width),
            optim_args(cell["dense"], cell["T"]),
            run_args(),
            f"--seed {dense_seed(wc.seed, wc.net)}",
            f"--save-epochs {','.join(map(str, save_epochs(cell))) or q('')}",
            base_tags(wc, seed=wc.seed, branch="dense", net=wc.net),
        ]
    )


# ----------------------------------------------------------------- match.smk


def match_params(wc):
    cell = cell_of(wc)
    m = cell["match"]
    a = (f"{data_args(cell)} --method {m['method']} --stat {m['stat']} --batch-size {m['batch_size']}"
         f" --sample-seed {m['sample_seed']} --stream-points {m['stream_points']}")
    if "batches" in m:
        a += f" --batches {m['batches']}"
    return f"{a} {run_args(progress=False)}"


def early_b(wc):
    """B at epoch e: its rewind checkpoint (the run's final.pt is the dependency)."""
    return f"{run_of(wc)}/dense/B/ckpt/epoch{wc.epoch}.pt"


def early_a(wc):
    if section(cell_of(wc), "early_matching")["match_a"] == "same":
        return f"{run_of(wc)}/dense/A/ckpt/epoch{wc.epoch}.pt"
    return f"{run_of(wc)}/dense/A/final.pt"


# ----------------------------------------------------------------- prune.smk


def prune_params(cell):
    p = cell["prune"]
    a = (
        f"{data_args(cell)} --targets {','.join(fmt_s(t) for t in prune_targets(cell))} --rate {p['rate']}"
        f" --mode ft --chain --ft-preset {p['ft_preset']} --ft-epochs {p['ft_epochs']} --ft-lr {p['ft_lr']}"
        f" --ft-momentum {p['ft_momentum']} --ft-weight-decay {p['ft_weight_decay']}"
    )
    for key in ("ft_batch_size", "ft_warmup_epochs", "ft_schedule", "ft_step_every", "ft_step_gamma"):
        if key in p:
            a += f" --{key.replace('_', '-')} {p[key]}"
    if "augment" in cell["dense"]:
        a += f" --augment {cell['dense']['augment']}"
    return f"{a} --precision {config['precision']} {run_args()}"


def prune_epochs(cell):
    return len(imp_schedule(prune_targets(cell), cell["prune"]["rate"])) * cell["prune"]["ft_epochs"]


PRUNE_TARGET_FILES = ("mask.pt", "sparsity.json", "model.pt", "result.json", "predictions.pt")


def prune_outputs(cell):
    """Declared outputs of the cell's prune rule (wildcards width and seed)."""
    base = f"{RESULTS}/{cell['experiment']}/{cell['name']}-w{{width}}/seed{{seed}}/prune"
    return [f"{base}/S{fmt_s(t)}/{f}" for t in prune_targets(cell) for f in PRUNE_TARGET_FILES]


def prune_tags(cell):
    def f(wc):
        return tags(experiment=cell["experiment"], dataset=cell["dataset"], model=cell["model"],
                    width=wc.width, seed=wc.seed, branch="imp")

    return f


# ----------------------------------------------------------------- sparse.smk


def sparse_args(wc, data_seed_of):
    cell = cell_of(wc)
    return " ".join(
        [
            data_args(cell),
            optim_args(cell["sparse"], cell["T"] - int(wc.k)),
            run_args(),
            f"--seed {sparse_seed(data_seed_of)}",
        ]
    )


def ckpt_path(wc, seed, net):
    return f"{run_dir(cell_of(wc), wc.width, seed)}/dense/{net}/ckpt/epoch{wc.k}.pt"


def sparse_epochs(cell, wc):
    return cell["T"] - int(wc.k)


def sparse_run_input(wc):
    return f"{run_of(wc)}/dense/{'A' if wc.branch == 'lth' else 'B'}/final.pt"


def sparse_mask_input(wc):
    name = "mask_permuted.pt" if wc.branch == "permuted" else "mask.pt"
    return f"{run_of(wc)}/prune/S{wc.sparsity}/{name}"


def sparse_tags(wc):
    return base_tags(wc, seed=wc.seed, sparsity=wc.sparsity, k=wc.k, branch=wc.branch,
                     match_epoch=cell_of(wc)["T"] if wc.branch == "permuted" else None)


def cross_mask_input(wc):
    if wc.xbranch == "permuted":
        return f"{run_of(wc)}/cross/B{wc.other}/prune/S{wc.sparsity}/mask_permuted.pt"
    return f"{run_of(wc)}/prune/S{wc.sparsity}/mask.pt"


# ----------------------------------------------------------------- ensembles.smk


def ensemble_members(wc):
    cell = cell_of(wc)
    sec = section(cell, "diversity")
    if sec is None:
        raise WorkflowError(f"experiment {wc.experiment}: {cell['name']} has no diversity study in the config")
    anchor = diversity_anchor(sec)
    S, k = float(wc.sparsity), int(wc.k)
    out = []
    for j in sec["seeds"]:
        if wc.group == "dense":
            out.append(dense_file(cell, wc.width, j, "A", "predictions.pt"))
        elif wc.group == "imp":
            out.append(f"{run_dir(cell, wc.width, j)}/prune/S{fmt_s(S)}/predictions.pt")
        else:
            out.append(f"{member_dir(cell, wc.width, anchor, j, S, k, wc.group)}/predictions.pt")
    return out


# ----------------------------------------------------------------- lmc.smk


def interp_args(name):
    def f(wc):
        cell = cell_of(wc)
        sec = section(cell, name)
        return f"{data_args(cell)} --alphas {sec['alphas']} --modes {','.join(sec['modes'])} {run_args(progress=False)}"

    return f


def interp_epochs(name):
    """Cost of an interpolation in epochs: each point re-estimates statistics on
    training batches and evaluates the test set."""

    def f(cell, wc):
        sec = section(cell, name)
        return 0.3 * sec["alphas"] * len(sec["modes"])

    return f


def imp_target(wc):
    return section(cell_of(wc), "imp_barrier")["sparsity"]


def imp_chain_input(wc):
    """A target file of the IMP chain: the round checkpoints exist once it does."""
    return f"{run_of(wc)}/prune/S{fmt_s(imp_target(wc))}/model.pt"


def imp_round_file(wc):
    return f"{run_of(wc)}/prune/rounds/round{wc.round}.pt"


def imp_tags(wc):
    cell = cell_of(wc)
    lineage = dict(imp_lineage(cell, imp_target(wc)))
    if int(wc.round) not in lineage:
        raise WorkflowError(f"IMP round {wc.round} is not on the way to sparsity {imp_target(wc)} (rounds {sorted(lineage)})")
    iteration = sorted(lineage).index(int(wc.round)) + 1  # along the path to the target, 1..n (Fig 4a's x)
    return base_tags(wc, seed=wc.seed, sparsity=fmt_s(imp_target(wc)), branch="imp", round=wc.round,
                     imp_iteration=iteration, round_sparsity=fmt_s(lineage[int(wc.round)]))


def plane_args(wc):
    cell = cell_of(wc)
    return f"{data_args(cell)} --grid {section(cell, 'plane')['grid']} {run_args(progress=False)}"


def plane_epochs(cell, wc):
    return 0.1 * section(cell, "plane")["grid"] ** 2


# ----------------------------------------------------------------- figures.smk
# Each produce_* yields (width, file) for one cell, so the same enumeration serves
# the tidy tables (all widths) and the per-width manifest.


def _dense_pairs(cell):
    both = set()
    for name in ("sweep", "lmc", "diversity", "early_matching", "plane"):
        both.update(pairs(cell, name))
    a_only = {p for p in pairs(cell, "imp_barrier") if p not in both}
    return sorted(both), sorted(a_only)


def _pruned_pairs(cell):
    out = set()
    for name in ("sweep", "imp_barrier", "plane", "diversity", "early_matching"):
        out.update(pairs(cell, name))
    return sorted(out)


def _matched_pairs(cell):
    out = set(pairs(cell, "sweep")) | set(pairs(cell, "lmc")) | set(pairs(cell, "plane"))
    div = section(cell, "diversity")
    if div:
        out.update((w, diversity_anchor(div)) for w in div["widths"])
    early = section(cell, "early_matching")
    if early and cell["T"] in early["epochs"]:
        out.update(pairs(cell, "early_matching"))
    return sorted(out)


def produce_runs(cell):
    both, a_only = _dense_pairs(cell)
    for w, s in both:
        for net in ("A", "B"):
            yield w, dense_file(cell, w, s, net, "result.json")
    for w, s in a_only:
        yield w, dense_file(cell, w, s, "A", "result.json")
    for w, s in _pruned_pairs(cell):
        for t in prune_targets(cell):
            yield w, f"{run_dir(cell, w, s)}/prune/S{fmt_s(t)}/result.json"
    sweep = section(cell, "sweep")
    if sweep:
        for w, s in pairs(cell, "sweep"):
            for S in sweep["sparsities"]:
                for k in sweep["rewind"]:
                    for b in BRANCHES:
                        yield w, f"{sparse_dir(cell, w, s, S, k, b)}/result.json"


def produce_matches(cell):
    for w, s in _matched_pairs(cell):
        yield w, f"{run_dir(cell, w, s)}/match/perm.json"


def produce_lmc(cell, name):
    for w, s in pairs(cell, "lmc"):
        yield w, f"{run_dir(cell, w, s)}/lmc/{name}"


def produce_imp(cell, ext):
    sec = section(cell, "imp_barrier")
    if sec:
        for w, s in pairs(cell, "imp_barrier"):
            for r, _ in imp_lineage(cell, sec["sparsity"]):
                yield w, f"{run_dir(cell, w, s)}/imp_barrier/round{r}.{ext}"


def produce_plane(cell):
    sec = section(cell, "plane")
    if sec:
        d = run_dir(cell, sec["width"], sec["seed"])
        yield sec["width"], f"{d}/plane/S{fmt_s(sec['sparsity'])}/k{sec['k']}/plane.csv"


def produce_ensembles(cell):
    sec = section(cell, "diversity")
    if sec:
        for w in sec["widths"]:
            for g in GROUPS:
                yield w, f"{cell_dir(cell, w)}/ensembles/S{fmt_s(sec['sparsity'])}/k{sec['k']}/{g}.json"


def produce_early(cell):
    sec = section(cell, "early_matching")
    if sec:
        for w, s in pairs(cell, "early_matching"):
            for S in sec["sparsities"]:
                for e in sec["epochs"]:
                    yield w, f"{early_permuted_dir(cell, w, s, e, S, sec['k'])}/result.json"
                for b in ("lth", "naive"):
                    yield w, f"{sparse_dir(cell, w, s, S, sec['k'], b)}/result.json"


PRODUCERS = {
    "runs": produce_runs,
    "matches": produce_matches,
    "lmc_curves": lambda c: produce_lmc(c, "curve.csv"),
    "lmc_barriers": lambda c: produce_lmc(c, "barriers.json"),
    "imp_curves": lambda c: produce_imp(c, "csv"),
    "imp_barriers": lambda c: produce_imp(c, "json"),
    "plane": produce_plane,
    "ensembles": produce_ensembles,
    "early": produce_early,
}


def tidy_files(exp, table):
    files = []
    for cell in cells_of(exp):
        files.extend(f for _, f in PRODUCERS[table](cell))
    return list(dict.fromkeys(files))


def has_section(exp, name):
    return any(section(c, name) for c in cells_of(exp))


def sweep_union(exp, key):
    out = set()
    for c in cells_of(exp):
        if section(c, "sweep"):
            out.update(section(c, "sweep")[key])
    return sorted(out)


def figure_names(exp):
    metrics = EXPERIMENTS[exp]["metrics"]
    names = []
    for name, (kind, metric, sec, _) in FIGURES.items():
        if not has_section(exp, sec):
            continue
        if metric is not None and metric not in metrics:
            continue
        if kind == "accuracy_vs_sparsity" and len(sweep_union(exp, "sparsities")) < 2:
            continue
        names.append(name)
    return names


def table_kinds(exp):
    return [kind for kind, (_, sec) in TABLES.items() if has_section(exp, sec)]


def experiment_targets(exp):
    out = [exp_file(exp, "summary.md")]
    for name in figure_names(exp):
        out += [exp_file(exp, "figures", f"{name}.pdf"), exp_file(exp, "figures", f"{name}.png")]
    for kind in table_kinds(exp):
        out += [exp_file(exp, "tables", f"{kind}.csv"), exp_file(exp, "tables", f"{kind}.md")]
    return out


def all_targets(wc):
    return [f for exp in EXPERIMENTS for f in experiment_targets(exp)]


def collect_inputs(wc):
    files = tidy_files(wc.experiment, wc.table)
    if not files:
        raise WorkflowError(f"experiment {wc.experiment} produces nothing for the {wc.table} table "
                            f"(no cell has the study that fills it)")
    return files


def figure_extra(kind, metric):
    def f(wc):
        a = f" --metric {metric}" if metric else ""
        if kind == "accuracy_vs_sparsity":
            ks = EXPERIMENTS[wc.experiment].get("sparsity_figure_ks") or sweep_union(wc.experiment, "rewind")
            a += f" --ks {','.join(map(str, ks))}"
        return a

    return f


def table_extra(kind):
    def f(wc):
        if kind == "accuracy":  # every accuracy the experiment reports (Table 10: top-1 and top-5)
            return f" --metrics {','.join(EXPERIMENTS[wc.experiment]['metrics'])}"
        if kind == "early_matching":
            k = next(section(c, "early_matching")["k"] for c in cells_of(wc.experiment) if section(c, "early_matching"))
            return f" --k {k}"
        return ""

    return f


def summary_inputs(wc):
    d = {"runs": exp_file(wc.experiment, "tidy", "runs.csv")}
    if tidy_files(wc.experiment, "matches"):
        d["matches"] = exp_file(wc.experiment, "tidy", "matches.csv")
    if has_section(wc.experiment, "lmc"):
        d["barriers"] = exp_file(wc.experiment, "tidy", "lmc_barriers.csv")
    return d


def summary_args(wc, input):
    return " ".join(f"--{key} {q(path)}" for key, path in input.items())


def width_files(wc):
    cell = cell_of(wc)
    w = int(wc.width)
    files = []
    for produce in PRODUCERS.values():
        files.extend(f for fw, f in produce(cell) if fw == w)
    return list(dict.fromkeys(files))


def _early_ks_consistent():
    for exp in EXPERIMENTS:
        ks = {section(c, "early_matching")["k"] for c in cells_of(exp) if section(c, "early_matching")}
        if len(ks) > 1:
            config_error(f"experiments.{exp}: the early_matching sections use different k {sorted(ks)}; "
                         f"Table 15 is drawn at one rewind point, so use one k per experiment")


_early_ks_consistent()


# ----------------------------------------------------------------- fused mode (config fused: true)
# The `fused` step trains several runs of one architecture and schedule in one
# process. With fused: true the workflow trains, per cell and width, all dense
# runs (A and B of every seed) in one job, and per cell, width and rewind point
# k every sparse run (grid, plane, diversity members, early matching) in one
# job. Outputs and tags are the same files as the per-run rules write.

FUSED = bool(config["fused"])


def _run(out_dir, init, final, mask, branch, seed, tags_):
    return {"out_dir": out_dir, "init": init, "final": final, "mask": mask, "branch": branch,
            "seed": seed, "tags": tags_}


def _run_tags(cell, w, **extra):
    return {"experiment": cell["experiment"], "dataset": cell["dataset"], "model": cell["model"],
            "width": str(w), **{k: str(v) for k, v in extra.items() if v is not None}}


def _std_run(cell, w, s, S, k, b):
    net = "A" if b == "lth" else "B"
    d = run_dir(cell, w, s)
    mask = f"{d}/prune/S{fmt_s(S)}/{'mask_permuted.pt' if b == 'permuted' else 'mask.pt'}"
    tags_ = _run_tags(cell, w, seed=s, sparsity=fmt_s(S), k=k, branch=b,
                      match_epoch=cell["T"] if b == "permuted" else None)
    return _run(sparse_dir(cell, w, s, S, k, b), f"{d}/dense/{net}/ckpt/epoch{k}.pt", f"{d}/dense/{net}/final.pt",
                mask, b, sparse_seed(s), tags_)


def group_runs(cell, w, k):
    """Every sparse run of the cell at width w and rewind point k, as the per-run rules define them."""
    runs, T = [], cell["T"]
    sweep, plane = section(cell, "sweep"), section(cell, "plane")
    div, early = section(cell, "diversity"), section(cell, "early_matching")
    if sweep and w in sweep["widths"] and k in sweep["rewind"]:
        runs += [_std_run(cell, w, s, S, k, b) for s in sweep["seeds"] for S in sweep["sparsities"] for b in BRANCHES]
    if plane and w == plane["width"] and k == plane["k"]:
        runs += [_std_run(cell, w, plane["seed"], plane["sparsity"], k, b) for b in ("lth", "permuted")]
    if div and w in div["widths"] and k == div["k"]:
        a, S = diversity_anchor(div), div["sparsity"]
        da = run_dir(cell, w, a)
        runs += [_std_run(cell, w, a, S, k, b) for b in BRANCHES]
        for j in div["seeds"][1:]:
            dj = run_dir(cell, w, j)
            runs.append(_run(member_dir(cell, w, a, j, S, k, "lth"), f"{da}/dense/A/ckpt/epoch{k}.pt",
                             f"{da}/dense/A/final.pt", f"{da}/prune/S{fmt_s(S)}/mask.pt", "lth", sparse_seed(j),
                             _run_tags(cell, w, seed=a, sparsity=fmt_s(S), k=k, branch="lth", member=j)))
            for b in ("naive", "permuted"):
                mask = (f"{da}/cross/B{j}/prune/S{fmt_s(S)}/mask_permuted.pt" if b == "permuted"
                        else f"{da}/prune/S{fmt_s(S)}/mask.pt")
                runs.append(_run(member_dir(cell, w, a, j, S, k, b), f"{dj}/dense/B/ckpt/epoch{k}.pt",
                                 f"{dj}/dense/B/final.pt", mask, b, sparse_seed(j),
                                 _run_tags(cell, w, seed=a, sparsity=fmt_s(S), k=k, branch=b, member=j)))
    if early and w in early["widths"] and k == early["k"]:
        for s in early["seeds"]:
            d = run_dir(cell, w, s)
            for S in early["sparsities"]:
                runs += [_std_run(cell, w, s, S, k, b) for b in ("lth", "naive")]
                for e in early["epochs"]:
                    if e == T:
                        runs.append(_std_run(cell, w, s, S, k, "permuted"))
                    else:
                        runs.append(_run(early_permuted_dir(cell, w, s, e, S, k), f"{d}/dense/B/ckpt/epoch{k}.pt",
                                         f"{d}/dense/B/final.pt",
                                         f"{d}/early/e{e}/prune/S{fmt_s(S)}/mask_permuted.pt", "permuted",
                                         sparse_seed(s),
                                         _run_tags(cell, w, seed=s, sparsity=fmt_s(S), k=k, branch="permuted",
                                                   match_epoch=e)))
    return list({r["out_dir"]: r for r in runs}.values())


def sparse_groups(cell):
    """(width, k) of every fused sparse job of the cell."""
    ks = set()
    for w in cell["widths"]:
        for k in save_epochs(cell):
            if group_runs(cell, w, k):
                ks.add((w, k))
    return sorted(ks)


def dense_group_runs(cell, w):
    """[(seed, net)] of the dense runs the cell needs at width w."""
    both, a_only = _dense_pairs(cell)
    runs = [(s, net) for ww, s in both if ww == w for net in ("A", "B")]
    return sorted(runs + [(s, "A") for ww, s in a_only if ww == w])


def _run_arg(spec):
    parts = [f"out_dir={spec['out_dir']}"]
    for key in ("init", "mask", "branch"):
        if spec.get(key):
            parts.append(f"{key}={spec[key]}")
    parts += [f"seed={spec['seed']}", f"data_seed={spec['seed']}"]
    parts += [f"tag.{k}={v}" for k, v in spec["tags"].items()]
    text = ",".join(parts)
    if any("," in str(v) for v in spec.values() if isinstance(v, str)):
        raise WorkflowError(f"fused run {spec['out_dir']}: a value contains a comma, which --run cannot carry")
    return f"--run {q(text)}"


def fused_dense_args(cell, w):
    runs = []
    for s, net in dense_group_runs(cell, w):
        tags_ = _run_tags(cell, w, seed=s, branch="dense", net=net)
        runs.append(_run_arg({"out_dir": f"{run_dir(cell, w, s)}/dense/{net}", "seed": dense_seed(s, net),
                              "tags": tags_}))
    return " ".join([data_args(cell), model_args(cell, w), optim_args(cell["dense"], cell["T"]), run_args(),
                     f"--save-epochs {','.join(map(str, save_epochs(cell))) or q('')}", *runs])


def fused_dense_outputs(cell, w):
    return [f"{run_dir(cell, w, s)}/dense/{net}/{f}" for s, net in dense_group_runs(cell, w)
            for f in ("final.pt", "result.json", "metrics.csv", "predictions.pt")]


def fused_sparse_args(cell, w, k):
    runs = [_run_arg(r) for r in group_runs(cell, w, k)]
    return " ".join([data_args(cell), optim_args(cell["sparse"], cell["T"] - k), run_args(), *runs])


def fused_sparse_inputs(cell, w, k):
    runs = group_runs(cell, w, k)
    return sorted({r["final"] for r in runs} | {r["mask"] for r in runs})


def fused_sparse_outputs(cell, w, k):
    return [f"{r['out_dir']}/{f}" for r in group_runs(cell, w, k)
            for f in ("final.pt", "result.json", "metrics.csv", "predictions.pt")]


def fused_minutes(cell, w, epochs, n_runs, attempt):
    # the stacked runs share one pass over the data: cheaper than n separate runs
    return train_minutes(cell, w, epochs * max(1.0, 0.5 * n_runs), attempt)
