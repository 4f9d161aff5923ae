"""The :class:`Table` every report table is, and its three renderings.

Every table is a :class:`Table`: the numbers (written as CSV), their display text
and which cells are bold (written as Markdown and LaTeX/booktabs).  Markdown and
LaTeX show exactly ``text``; the CSV holds the numbers behind it (an empty CSV cell is
a "—" cell).

The tables themselves, from the runs DataFrame (``analysis.records``):

* ``analysis.comparison`` — the long comparison table (one row per setting × budget × method);
* ``analysis.comparison_wide`` — the paper-style matrix of methods × (setting, budget);
* ``analysis.quality`` — selection quality where the scenario has ground truth;
* ``analysis.run_lists`` — failed runs, runs with warnings, unreadable records;
* ``analysis.paper_table`` — paper vs reproduced.

How their rows group runs and treat the budget is ``analysis.budget_rules``; how a metric is
scaled, labelled and compared is ``analysis.metrics``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd


#: the cell text of a missing or not-applicable value (CSV: empty)
NA = "—"


def fmt(x, digits=2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NA
    return f"{x:.{digits}f}"


def pm(mean, std, digits=2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return NA
    return fmt(mean, digits) if std is None or math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


@dataclass
class Table:
    name: str
    caption: str
    data: pd.DataFrame                      # numbers (CSV)
    text: pd.DataFrame                      # display strings, same shape as the shown table
    bold: pd.DataFrame | None = None        # bool mask over ``text``
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        t = self.text
        cols = [str(c) for c in t.columns]
        lines = ["| " + " | ".join(_md_escape(c) for c in cols) + " |",
                 "|" + "|".join("---" for _ in cols) + "|"]
        for i in range(len(t)):
            cells = []
            for j in range(t.shape[1]):
                s = _md_escape(str(t.iat[i, j]))
                if self.bold is not None and bool(self.bold.iat[i, j]) and s not in ("", NA):
                    s = f"**{s}**"
                cells.append(s)
            lines.append("| " + " | ".join(cells) + " |")
        out = "\n".join(lines)
        if self.notes:
            out += "\n\n" + "\n".join(f"_{n}_" for n in self.notes)
        return out

    def to_latex(self) -> str:
        t = self.text
        align = "l" * min(2, t.shape[1]) + "r" * max(0, t.shape[1] - 2)
        lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{_tex(self.caption)}}}",
                 f"\\label{{tab:{self.name}}}", f"\\begin{{tabular}}{{{align}}}", "\\toprule",
                 " & ".join(_tex(str(c)) for c in t.columns) + " \\\\", "\\midrule"]
        for i in range(len(t)):
            cells = []
            for j in range(t.shape[1]):
                s = _tex(str(t.iat[i, j]))
                if self.bold is not None and bool(self.bold.iat[i, j]) and s not in ("", _tex(NA)):
                    s = f"\\textbf{{{s}}}"
                cells.append(s)
            lines.append(" & ".join(cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        return self.data.to_csv(index=False)

    def write(self, out_dir) -> dict[str, str]:
        from pathlib import Path

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for ext, body in (("md", self.to_markdown() + "\n"), ("tex", self.to_latex()), ("csv", self.to_csv())):
            p = out_dir / f"{self.name}.{ext}"
            p.write_text(body)
            paths[ext] = str(p)
        return paths


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$", "×": r"$\times$", "–": "--", "—": "---", "−": "$-$", "≈": r"$\approx$", "≥": r"$\geq$", ">": r"$>$",
        "<": r"$<$", "Δ": r"$\Delta$"}


def _tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)
