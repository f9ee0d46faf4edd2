"""One look for every figure: fixed colours/markers per branch, mode and width.

Colours are the Okabe-Ito colour-blind-safe palette. Every branch (LTH,
naive, permuted, the controls, IMP and dense) keeps the colour, marker and
line style of its record (``sparsebasin.branches``) in every figure;
interpolation modes keep the same line style and marker; widths map to a
fixed viridis shade by log2(width), so ×4 is the same colour everywhere.
Panels are sized for a paper column (~3.3 in) with fonts of 7-8 pt.
"""

from __future__ import annotations

import math

from ..branches import TABLE as BRANCH_TABLE

PANEL_WIDTH = 3.3  # inches
PANEL_HEIGHT = 2.4
BAND_ALPHA = 0.18

BRANCH_STYLE = {b.name: b.style for b in BRANCH_TABLE}  # each branch's record carries its look

# The paper's published values (sparsebasin.reference): thin, grey, dashed, hollow markers, under our lines.
PAPER_STYLE = {"color": "#9E9E9E", "linestyle": "--", "linewidth": 0.9, "markerfacecolor": "none", "zorder": 1.5}
PAPER_LABEL = "paper"

MODE_STYLE = {
    "plain": {"color": "#555555", "marker": "o", "linestyle": "-"},
    "bn_reset": {"color": "#E69F00", "marker": "s", "linestyle": "--"},
    "repair": {"color": "#56B4E9", "marker": "^", "linestyle": ":"},
    "repair_block": {"color": "#0072B2", "marker": "v", "linestyle": "-."},
}

ANCHOR_STYLE = {
    "origin": {"color": "#000000", "marker": "X"},
    "p1": {"color": BRANCH_STYLE["lth"]["color"], "marker": BRANCH_STYLE["lth"]["marker"]},
    "p2": {"color": BRANCH_STYLE["permuted"]["color"], "marker": BRANCH_STYLE["permuted"]["marker"]},
}
# Fig. 4b: the plane through dense A, the LTH solution and pi^-1(permuted).
ANCHOR_LABELS = {"origin": "Dense A", "p1": "LTH", "p2": "Permuted (π⁻¹)"}

RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "lines.linewidth": 1.3,
    "lines.markersize": 4,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "pdf.fonttype": 42,  # embed TrueType: editable, searchable text in the PDF
    "ps.fonttype": 42,
}


def context():
    """``with style.context():`` applies the shared rcParams for building and saving."""
    import matplotlib

    return matplotlib.rc_context(RC)


def branch(name: str) -> dict:
    return dict(BRANCH_STYLE.get(str(name), {"color": "#777777", "marker": "x", "linestyle": "-"}))


# A matching method's line style on the branches that depend on the matching (the paper's own keeps the
# branch's); B matched before the end of training: the branch's colour lightened, hollow markers.
METHOD_LINESTYLE = {"activation": "-", "weight": "--"}
EARLY_LIGHTEN = 0.5  # the earliest matching epoch mixes this much white into the colour


def series(branch_name: str, method=None, epoch_rank: float = 0.0) -> dict:
    """A series' look: its branch's colour and marker; the method's line style; ``epoch_rank`` in [0, 1]
    (0: B matched at the latest epoch, 1: the earliest) lightens the colour and hollows the marker."""
    s = branch(branch_name)
    if method is not None and str(method) in METHOD_LINESTYLE:
        s["linestyle"] = METHOD_LINESTYLE[str(method)]
    elif method is not None:
        s["linestyle"] = "-."
    if epoch_rank > 0:
        from matplotlib.colors import to_rgb

        mix = EARLY_LIGHTEN * min(float(epoch_rank), 1.0)
        s["color"] = tuple((1 - mix) * c + mix for c in to_rgb(s["color"]))
        s["markerfacecolor"] = "none"
    return s


def paper(branch_name: str) -> dict:
    """The paper's line of a branch: its marker shape (hollow) in the shared grey style."""
    return {**PAPER_STYLE, "marker": branch(branch_name)["marker"] or "o"}


def mode(name: str) -> dict:
    return dict(MODE_STYLE.get(str(name), {"color": "#777777", "marker": "x", "linestyle": "-."}))


def width_colour(width: float) -> tuple:
    """Fixed shade per width multiplier (×1 dark purple, ×4 blue, ×16 green, ×32 yellow-green)."""
    from matplotlib import colormaps

    position = min(max(math.log2(float(width)), 0.0), 5.0) / 5.0
    return colormaps["viridis"](0.9 * position)


def path_style(permuted: bool, mode_name: str) -> dict:
    """Interpolation setting: branch colour (naive/permuted), mode line style and marker."""
    s = mode(mode_name)
    s["color"] = BRANCH_STYLE["permuted" if permuted else "naive"]["color"]
    return s
