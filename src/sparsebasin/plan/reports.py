"""What each experiment reports: its tidy tables, figures, paper tables and summary (torch-free).

One table of facts (``FIGURES``, ``TABLES``) decides, from the studies an
experiment has, which figures and tables it gets and with which options;
the workflow generates one rule per figure and table from it.
"""

from __future__ import annotations

from . import paths
from .table import Plan, q

# figure name -> (figure kind, --metric or None, study that enables it, tidy table it reads)
FIGURES = {
    "accuracy_vs_rewind": ("accuracy_vs_rewind", "test_acc", "sweep", "runs"),
    "accuracy_vs_rewind_top5": ("accuracy_vs_rewind", "test_top5", "sweep", "runs"),
    "accuracy_vs_sparsity": ("accuracy_vs_sparsity", "test_acc", "sweep", "runs"),
    "accuracy_vs_sparsity_top5": ("accuracy_vs_sparsity", "test_top5", "sweep", "runs"),
    "lmc_width": ("lmc_width", None, "lmc", "lmc_curves"),
    "imp_barrier": ("imp_barrier", None, "imp_barrier", "imp_curves"),
    "plane": ("plane", None, "plane", "plane"),
    "baselines": ("baselines", "test_acc", "sweep", "runs"),
}
# table kind -> (tidy table it reads, study that enables it)
TABLES = {
    "accuracy": ("runs", "sweep"),
    "diversity": ("ensembles", "diversity"),
    "early_matching": ("early", "early_matching"),
    "lmc": ("lmc_barriers", "lmc"),
    "baselines": ("runs", "sweep"),
}
COMPARISONS = ("baselines",)  # kinds drawn only where an experiment compares more than the paper's sweep


def figure_names(plan: Plan, exp: str) -> list[str]:
    metrics = plan.config["experiments"][exp]["metrics"]
    names = []
    for name, (kind, metric, study, _) in FIGURES.items():
        if not plan.has_study(exp, study):
            continue
        if metric is not None and metric not in metrics:
            continue
        if kind == "accuracy_vs_sparsity" and len(plan.sweep_union(exp, "sparsities")) < 2:
            continue
        if kind in COMPARISONS and not compares(plan, exp):
            continue
        names.append(name)
    return names


def table_kinds(plan: Plan, exp: str) -> list[str]:
    return [kind for kind, (_, study) in TABLES.items() if plan.has_study(exp, study)
            and (kind not in COMPARISONS or compares(plan, exp))]


def compares(plan: Plan, exp: str) -> bool:
    """Whether an experiment's sweep compares more than the paper's three branches at one matching: a control
    branch (sparsebasin.branches), several matching methods or several matching epochs of B."""
    from ..branches import PAPER_BRANCHES

    for c in plan.cells_of(exp):
        sweep = c.section("sweep")
        if sweep and (set(sweep["branches"]) - set(PAPER_BRANCHES) or len(c.methods) > 1
                      or len(sweep["match_epochs"]) > 1):
            return True
    return False


def report_inputs(plan: Plan, exp: str, kind: str, table: str) -> dict[str, str]:
    """A figure's or table's tidy inputs: its table, and for a comparison the matches table (matching times)."""
    d = {"table": paths.experiment_file(exp, "tidy", f"{table}.csv")}
    if kind in COMPARISONS and plan.tidy[exp]["matches"]:
        d["matches"] = paths.experiment_file(exp, "tidy", "matches.csv")
    return d


SCORECARD = ("csv", "md", "json", "html")  # tables/scorecard.{csv,md,json,html}


def experiment_targets(plan: Plan, exp: str) -> list[str]:
    out = [paths.experiment_file(exp, "summary.md")]
    out += [paths.experiment_file(exp, "tables", f"scorecard.{ext}") for ext in SCORECARD]
    for name in figure_names(plan, exp):
        out += [paths.experiment_file(exp, "figures", f"{name}.{ext}") for ext in ("pdf", "png")]
    for kind in table_kinds(plan, exp):
        out += [paths.experiment_file(exp, "tables", f"{kind}.{ext}") for ext in ("csv", "md")]
    return out


def figure_extra(plan: Plan, exp: str, kind: str, metric: str | None) -> str:
    a = f" --metric {metric}" if metric else ""
    if kind in COMPARISONS and plan.tidy[exp]["matches"]:
        a += f" --matches {q(paths.experiment_file(exp, 'tidy', 'matches.csv'))}"
    if kind.startswith("accuracy_vs_") and plan.config["experiments"][exp]["paper_reference"]:
        a += " --paper-reference"
    if kind == "accuracy_vs_sparsity":
        ks = plan.config["experiments"][exp].get("sparsity_figure_ks") or plan.sweep_union(exp, "rewind")
        a += f" --ks {','.join(map(str, ks))}"
    return a


def table_extra(plan: Plan, exp: str, kind: str) -> str:
    if kind in COMPARISONS:
        return (f" --matches {q(paths.experiment_file(exp, 'tidy', 'matches.csv'))}"
                if plan.tidy[exp]["matches"] else "")
    if kind == "accuracy":  # every accuracy the experiment reports (Table 10: top-1 and top-5)
        return f" --metrics {','.join(plan.config['experiments'][exp]['metrics'])}"
    if kind == "early_matching":
        k = next(c.section("early_matching")["k"] for c in plan.cells_of(exp) if c.section("early_matching"))
        return f" --k {k}"
    return ""


def scorecard_inputs(plan: Plan, exp: str) -> dict[str, str]:
    """The tidy tables the scorecard compares: runs always, Table 1 and 15 and the barriers when run."""
    d = {"runs": paths.experiment_file(exp, "tidy", "runs.csv")}
    for option, table, study in (("diversity", "ensembles", "diversity"), ("early", "early", "early_matching"),
                                 ("barriers", "lmc_barriers", "lmc")):
        if plan.has_study(exp, study):
            d[option] = paths.experiment_file(exp, "tidy", f"{table}.csv")
    return d


def scorecard_extra(plan: Plan, exp: str) -> str:
    return f" --metrics {','.join(plan.config['experiments'][exp]['metrics'])}"


def summary_inputs(plan: Plan, exp: str) -> dict[str, str]:
    d = {"runs": paths.experiment_file(exp, "tidy", "runs.csv"),
         "scorecard": paths.experiment_file(exp, "tables", "scorecard.json")}
    if plan.tidy[exp]["matches"]:
        d["matches"] = paths.experiment_file(exp, "tidy", "matches.csv")
    if plan.has_study(exp, "lmc"):
        d["barriers"] = paths.experiment_file(exp, "tidy", "lmc_barriers.csv")
    return d


def file_args(inputs: dict[str, str]) -> str:
    """Named input files as step options: {"runs": path} -> --runs path."""
    return " ".join(f"--{key} {q(path)}" for key, path in inputs.items())


def index_rows(plan: Plan, exp: str | None = None) -> list[dict]:
    """Which run directory is which: kind, the experiments and studies using it, and its tags."""
    rows = []
    for kind, jobs in plan.jobs.items():
        for job in jobs.values():
            users = sorted(job.uses)
            if exp is not None and not any(e == exp for e, _ in users):
                continue
            rows.append({"kind": kind, "experiments": ",".join(sorted({e for e, _ in users})),
                         "studies": ",".join(sorted({s for _, s in users})), **job.spec.get("tags", {}),
                         "path": job.path})
    return rows


# --------------------------------------------------------------- stale outputs --

# What an experiment's own tree holds besides logs and benchmarks: the outputs a config asks for.
OWN_DIRS = ("figures", "tables", "tidy")


def wanted_outputs(plan: Plan, exp: str) -> set[str]:
    """Every file below results/<exp>/ (outside logs/ and benchmarks/) that this config produces."""
    want = set(experiment_targets(plan, exp))
    want |= {paths.experiment_file(exp, "tidy", f"{t}.csv") for t, files in plan.tidy[exp].items() if files}
    want |= {j.path for j in plan.jobs["ensemble"].values() if any(e == exp for e, _ in j.uses)}
    want |= {paths.experiment_file(exp, f"{cell}-w{w}", "manifest.txt")
             for (e, cell, w) in plan.width_files if e == exp}
    return want | {f"{f}.provenance.json" for f in want}


def stale_outputs(plan: Plan, exp: str, root=".") -> list[str]:
    """Files of results/<exp>/ that the config no longer asks for (a removed study, sparsity, width...),
    which would otherwise sit beside fresh ones under the same names. Run directories are never among them."""
    from pathlib import Path

    base = Path(root) / paths.experiment_dir(exp)
    want = wanted_outputs(plan, exp)
    out = []
    for sub in base.iterdir() if base.is_dir() else ():
        if sub.name in ("logs", "benchmarks", STALE) or not sub.is_dir():
            continue
        if sub.name not in OWN_DIRS and not (sub / "ensembles").is_dir() and not (sub / "manifest.txt").exists():
            continue  # not a directory this workflow writes: leave it alone
        for f in sorted(p for p in sub.rglob("*") if p.is_file() or p.is_symlink()):
            rel = f.relative_to(root).as_posix()
            if rel not in want and not f.name.startswith("."):
                out.append(rel)
    return sorted(out)


STALE = "stale"  # results/<exp>/stale/<UTC time>/: where set_aside moves them


def set_aside(plan: Plan, exp: str, root=".", now: str | None = None) -> tuple[list[str], str | None]:
    """Move ``stale_outputs`` to results/<exp>/stale/<UTC time>/ (same relative paths); returns (moved, where)."""
    import os
    import time
    from pathlib import Path

    stale = stale_outputs(plan, exp, root)
    if not stale:
        return [], None
    stamp = now or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    exp_dir = Path(root) / paths.experiment_dir(exp)
    dest = exp_dir / STALE / stamp
    for rel in stale:
        src = Path(root) / rel
        target = dest / src.relative_to(exp_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)
    return stale, dest.as_posix()
