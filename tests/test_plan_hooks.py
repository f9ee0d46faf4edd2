"""What the workflow says and does around its jobs (plan.hooks): results of what a config no longer asks for are
moved aside, never left beside fresh ones (issue 31, item 3); a target needing part of a fused group is told
what else it trains and how not to (issue 27, item 6)."""

from __future__ import annotations

from pathlib import Path

from workflow_plan import plan_of

from sparsebasin.plan import hooks, reports


def _tree(root: Path, files) -> None:
    for f in files:
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x", encoding="utf-8")


def test_outputs_of_removed_settings_are_set_aside_and_nothing_else(tmp_path):
    plan = plan_of()
    exp = plan.experiments()[0]
    wanted = sorted(reports.wanted_outputs(plan, exp))
    _tree(tmp_path, [f for f in wanted if not f.endswith(".provenance.json")])
    gone = [f"results/{exp}/figures/accuracy_vs_sparsity_top5.pdf",  # a metric the config dropped
            f"results/{exp}/tables/diversity_old.md",
            f"results/{exp}/mnist1d-mlp-w8/ensembles/S0.95/k4/dense.json",  # a width the config dropped
            f"results/{exp}/tidy/early_v1.csv.provenance.json"]
    kept = [f"results/{exp}/logs/figure_x.log", f"results/{exp}/benchmarks/x.tsv", f"results/{exp}/notes/mine.txt",
            "results/runs/mnist1d-mlp-w1/d00000000/seed0/dense/A/result.json"]
    _tree(tmp_path, gone + kept)
    assert reports.stale_outputs(plan, exp, tmp_path) == sorted(gone)
    moved, where = reports.set_aside(plan, exp, tmp_path, now="T0")
    assert sorted(moved) == sorted(gone) and where.endswith(f"results/{exp}/stale/T0")
    for f in gone:
        assert not (tmp_path / f).exists()
        assert (Path(where) / Path(f).relative_to(f"results/{exp}")).exists()
    for f in kept + [f for f in wanted if not f.endswith(".provenance.json")]:
        assert (tmp_path / f).exists(), f
    assert reports.set_aside(plan, exp, tmp_path) == ([], None)  # nothing left: nothing said


def test_a_target_needing_part_of_a_fused_group_says_what_else_it_trains():
    plan = plan_of()
    fj = next(f for f in plan.fused_jobs() if f.name.startswith("sparse_fused") and len(f.jobs) > 2)
    wanted = fj.jobs[0]
    needed = {f"{wanted.path}/result.json"}
    lines = hooks.fused_extras(plan, {fj.name}, needed, exists=lambda p: False)
    assert len(lines) == 1 and fj.name in lines[0], lines
    assert f"trains {len(fj.jobs)} runs" in lines[0] and f"also trains {len(fj.jobs) - 1} more" in lines[0]
    assert "--config fused=False" in lines[0]
    # members already finished are not trained again, so not named; a target needing them all gets no note
    assert hooks.fused_extras(plan, {fj.name}, needed, exists=lambda p: not p.startswith(wanted.path)) == []
    everything = {o for r in fj.jobs for o in r.outputs}
    assert hooks.fused_extras(plan, {fj.name}, everything, exists=lambda p: False) == []
    assert hooks.fused_extras(plan, set(), needed, exists=lambda p: False) == []  # not running: nothing to say
