"""``sparsebasin summary``: the per-experiment ``summary.md``.

Opens with the scorecard's one-line verdict (``--scorecard``), then permuted − naive
and the fraction of the naive-to-LTH gap closed per width and sparsity (see ``sparsebasin.analysis.summary``), with the matched
correlation (``--matches``) and loss barrier (``--barriers``) beside them; the scorecard's cells of Table 1
(ensembles) and Table 15 (early matching) are shown beside the paper's.
"""

from __future__ import annotations

import argparse

from .. import provenance
from ..analysis import outputs, tidy
from ..analysis.summary import summary_markdown
from ..analysis.tables import ACCURACY_METRICS
from .common import NONNEG_FLOAT, StepPaths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", required=True, metavar="CSV", help="runs table from collect over result.json")
    p.add_argument("--matches", default=None, metavar="CSV", help="collected match summaries (mean_correlation)")
    p.add_argument("--barriers", default=None, metavar="CSV", help="collected barriers JSON or LMC curves")
    p.add_argument("--scorecard", default=None, metavar="JSON",
                   help="the scorecard's JSON (scorecard --out-json): its headline opens the summary")
    p.add_argument("--metric", default="test_acc", choices=ACCURACY_METRICS)
    p.add_argument("--gap-floor", type=NONNEG_FLOAT, default=0.1, metavar="PP",
                   help="gap closed is n/a when LTH - naive is below this many percentage points (default 0.1)")
    p.add_argument("--out", required=True, metavar="MD")


def run(args: argparse.Namespace) -> None:
    runs = tidy.read_table(args.runs)
    matches = tidy.read_table(args.matches) if args.matches else None
    barriers = tidy.read_table(args.barriers) if args.barriers else None
    card = _card(args.scorecard) if args.scorecard else None
    text = summary_markdown(runs, matches, barriers, metric=args.metric, gap_floor_pp=args.gap_floor, card=card)
    config = {"step": "summary", "runs": args.runs, "matches": args.matches, "barriers": args.barriers,
              "scorecard": args.scorecard, "metric": args.metric, "gap_floor_pp": args.gap_floor}
    outputs.write_markdown(args.out, text, provenance.collect(config=config))


def _card(path: str) -> dict:
    from ..errors import UserError
    from ..io import read_json

    obj = read_json(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("headline"), str):
        raise UserError(f"{path} has no 'headline'; pass the JSON that scorecard --out-json writes")
    if not isinstance(obj.get("cells", []), list):
        raise UserError(f"{path}: 'cells' must be a list of records; rerun scorecard")
    return obj


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--runs", args.runs), ("--matches", args.matches), ("--barriers", args.barriers),
                             ("--scorecard", args.scorecard)],
                     outputs=[("--out", args.out)])
