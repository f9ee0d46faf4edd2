"""envs/sparsebasin.yaml (for `snakemake --sdm conda`) pins what pyproject.toml pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _norm(requirement: str) -> tuple[str, str]:
    """('torch', '==2.14.1'): canonical name and the specifier without spaces."""
    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$", requirement)
    assert m, requirement
    name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
    spec = ",".join(sorted(part.strip() for part in m.group(2).replace(" ", "").split(",") if part.strip()))
    return name, spec


def _env():
    return yaml.safe_load((REPO / "envs" / "sparsebasin.yaml").read_text())


def _env_pip():
    pip = [d for d in _env()["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "one pip: section"
    return pip[0]["pip"]


def test_env_pins_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = dict(_norm(r) for r in project["dependencies"])
    have = dict(_norm(r) for r in _env_pip() if not r.startswith("-e"))
    assert have == wanted


def test_env_installs_the_package_itself_editable():
    editable = [r for r in _env_pip() if r.startswith("-e")]
    assert editable == ["-e ${SPARSEBASIN_ROOT}"]
    snakefile = (REPO / "Snakefile").read_text()
    assert 'os.environ.setdefault("SPARSEBASIN_ROOT", workflow.basedir)' in snakefile


def test_env_python_matches_requires_python():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    minimum = re.match(r">=\s*(\d+\.\d+)", project["requires-python"]).group(1)
    pythons = [d for d in _env()["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert pythons == [f"python={minimum}"]
    assert "pip" in _env()["dependencies"]


def test_every_rule_uses_the_env():
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        n_rules = len(re.findall(r"(?m)^\s*rule\b", text))
        assert text.count("conda:") == n_rules, path.name
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert 'CONDA_ENV = "../../envs/sparsebasin.yaml"' in common
