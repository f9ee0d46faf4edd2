"""``sparsebasin scorecard``: every cell of an experiment against the paper's published number.

Reads the tidy tables ``collect`` writes (accuracies as fractions, one row per
seed) and writes one row per cell: our mean, std and n, the paper's, the
difference and a verdict (``sparsebasin.analysis.scorecard``), then the
published cells not run; the Markdown adds the paper's claims, tested per cell
over seeds (one-sided paired t-test, alpha 0.05). ``--out-json`` holds the
one-line headline (summary.md opens with it), the verdict counts, the claims
with their per-cell tests and every cell (summary.md shows the Table 1 and
Table 15 cells from it); non-finite numbers are null.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import Number, StepPaths, add_tracker_args

SIGMA = Number(float, "a number > 0", 0.0, above=True)


def _metrics(text: str) -> list[str]:
    from ..analysis.tables import ACCURACY_METRICS

    out = [m.strip() for m in text.split(",") if m.strip()]
    if not out or any(m not in ACCURACY_METRICS for m in out):
        raise argparse.ArgumentTypeError(f"must be a comma-separated subset of {','.join(ACCURACY_METRICS)}, got {text!r}")
    return list(dict.fromkeys(out))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", required=True, metavar="CSV", help="runs table (collect over result.json)")
    p.add_argument("--diversity", default=None, metavar="CSV", help="ensembles table (Table 1)")
    p.add_argument("--early", default=None, metavar="CSV", help="early-matching runs table (Table 15)")
    p.add_argument("--barriers", default=None, metavar="CSV", help="LMC barriers (the barrier-vs-width claim)")
    p.add_argument("--metrics", type=_metrics, default=["test_acc"], help="accuracies compared (default test_acc)")
    p.add_argument("--sigma", type=SIGMA, default=2.0, help="'within' means within this many standard errors (default 2)")
    p.add_argument("--out-csv", required=True, metavar="CSV")
    p.add_argument("--out-md", required=True, metavar="MD")
    p.add_argument("--out-json", default=None, metavar="JSON", help="headline, verdict counts and claims")
    p.add_argument("--out-html", default=None, metavar="HTML",
                   help="the Markdown as a page a browser shows (the HTML report's landing page includes it)")
    add_tracker_args(p)


def run(args: argparse.Namespace) -> None:
    from .. import provenance, reference
    from ..analysis import outputs, tidy
    from ..analysis.scorecard import scorecard, to_markdown
    from ..io import write_json

    read = lambda path: tidy.read_table(path) if path else None  # noqa: E731
    card = scorecard(read(args.runs), read(args.diversity), read(args.early), read(args.barriers), sigma=args.sigma,
                     metrics=args.metrics)
    config = {"step": "scorecard", "runs": args.runs, "diversity": args.diversity, "early": args.early,
              "barriers": args.barriers, "metrics": args.metrics, "sigma": args.sigma, "reference": reference.SOURCE}
    prov = provenance.collect(config=config)
    outputs.write_csv(args.out_csv, card.cells, prov)
    outputs.write_markdown(args.out_md, to_markdown(card), prov)
    if args.out_json:
        write_json(args.out_json, card.as_dict() | {"provenance": prov})
    if args.out_html:
        from ..analysis import html
        from ..io import write_text

        comment = outputs.provenance_json(prov).replace("-->", "-- >")
        write_text(args.out_html, html.page(f"<!-- provenance: {comment} -->\n\n{to_markdown(card)}",
                                            "Reproduction scorecard", headline_prefix=card.headline()))
    print(card.headline())
    if args.tracker != "none":  # the analysis tables as one tracked run beside the training runs
        from .. import tracking

        name = f"{Path(args.out_csv).resolve().parent.parent.name}/analysis"
        tracker = tracking.start(args.tracker, name, tags={"step": "scorecard"}, config=config,
                                 project=args.tracker_project, mode=args.tracker_mode,
                                 directory=args.tracker_dir or Path(args.out_csv).parent / "tracking")
        tracker.table("scorecard", card.cells.to_dict("records"))
        for label, path in (("barriers", args.barriers), ("diversity", args.diversity)):
            if path:
                tracker.table(label, tidy.read_table(path).to_dict("records"))
        tracker.result(card.as_dict()["counts"])
        tracker.finish()


def paths(args: argparse.Namespace) -> StepPaths:
    return StepPaths(inputs=[("--runs", args.runs), ("--diversity", args.diversity), ("--early", args.early),
                             ("--barriers", args.barriers)],
                     outputs=[("--out-csv", args.out_csv), ("--out-md", args.out_md), ("--out-json", args.out_json),
                              ("--out-html", args.out_html)])
