"""Reading what Snakemake prints, for the workflow and cluster tests."""

from __future__ import annotations


def job_stats(text: str) -> dict[str, int]:
    """The first "Job stats" table of a run or dry run: rule -> count (no total); {} if none."""
    stats, inside = {}, False
    for line in text.splitlines():
        if line.startswith("Job stats:"):
            inside = True
            continue
        if inside:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] == "total":
                    return stats
                stats[parts[0]] = int(parts[1])
    return stats
