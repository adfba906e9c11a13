"""The benchmark report: sections of tables, bars (PASS/FAIL) and plots, written as Markdown and JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

REPORTS = Path(__file__).resolve().parent.parent / "reports"
VERSIONS = ("numpy", "scipy", "numba", "osmnx", "networkx", "fastapi", "psycopg", "h3", "shapely")


def machine() -> dict[str, Any]:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
    }


def percentiles(samples_s: list[float] | np.ndarray) -> dict[str, float]:
    a = np.asarray(samples_s, dtype=float) * 1000.0
    if a.size == 0:
        return {"p50_ms": float("nan"), "p90_ms": float("nan"), "p99_ms": float("nan"), "n": 0}
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "n": int(a.size),
    }


@dataclass
class Bar:
    name: str
    passed: bool
    detail: str


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[Any]]]] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


class Report:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.started = time.time()
        self.sections: list[Section] = []
        self.bars: list[Bar] = []
        REPORTS.mkdir(exist_ok=True)

    def section(self, title: str) -> Section:
        s = Section(title)
        self.sections.append(s)
        print(f"\n== {title}", flush=True)
        return s

    def bar(self, name: str, passed: bool, detail: str) -> None:
        self.bars.append(Bar(name, passed, detail))
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}", flush=True)

    def plot_path(self, name: str) -> Path:
        return REPORTS / f"{name}.png"

    def save_plot(self, fig: Any, name: str, section: Section) -> None:
        """Write a matplotlib figure as reports/<name>.png, close it, and show it in `section`."""
        import matplotlib.pyplot as plt

        fig.tight_layout()
        path = self.plot_path(name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        section.plots.append(path.name)

    def write(self) -> Path:
        m = machine()
        lines = [
            "# Benchmark report",
            "",
            f"Seed {self.seed}; {m['cpus']} CPUs, {m['memory_gib']} GiB; {m['platform']}; Python {m['python']}.",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
            "Timings are ratios against a baseline measured in the same run: the absolute numbers move with",
            "the machine's load, the ratios much less.",
            "",
            "## Bars",
            "",
        ]
        lines += [f"- **{'PASS' if b.passed else 'FAIL'}** {b.name}: {b.detail}" for b in self.bars]
        for s in self.sections:
            lines += ["", f"## {s.title}", ""]
            lines += s.text
            for header, rows in s.tables:
                lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
            for p in s.plots:
                lines += ["", f"![{p}]({p})"]
        md = REPORTS / "bench.md"
        md.write_text("\n".join(lines) + "\n", encoding="utf-8")
        payload = {
            "seed": self.seed,
            "machine": m,
            "seconds": round(time.time() - self.started, 1),
            "bars": [b.__dict__ for b in self.bars],
            "sections": {s.title: s.data for s in self.sections},
        }
        (REPORTS / "bench.json").write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        return md


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
