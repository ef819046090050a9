"""How often the claims engine returns each verdict, by simulation: per-seed tables drawn with a
known true effect are pushed through the real rule of a registered claim and the real report gate
(:func:`odeflows.claims.report.judge`), so what is measured is what a user's tables get.

``python -m odeflows.claims.calibration`` prints the error and power tables of ``docs/verdicts.md``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from odeflows.claims.core import CLAIMS, Evidence, Protocol
from odeflows.claims.report import judge
from odeflows.claims.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

__all__ = ["SHAPES", "Shape", "evidence_for", "main", "rates"]


@dataclass(frozen=True)
class Shape:
    """A per-seed table's shape: one claim's two arms on one dataset, their mean and spread."""

    claim: int
    experiment: str
    dataset: str
    column: str
    better: str
    worse: str
    mean: float  # of the worse arm
    sd_better: float
    sd_worse: float
    higher_is_better: bool
    substitute: bool = True  # a stand-in dataset: only the paper's direction carries over
    paper: dict[str, float] | None = None  # the papers' numbers of the two arms (metric: value)
    metric: str = ""
    paper_sd: float | None = None  # a paper's effect stated in standard deviations (claim 4)

    def table(self, rng: np.random.Generator, seeds: int, effect: float) -> pd.DataFrame:
        """Seeds of both arms; ``effect`` > 0 favours ``better`` as the paper says."""
        shift = effect if self.higher_is_better else -effect
        rows = []
        for model, mean, sd in ((self.better, self.mean + shift, self.sd_better),
                                (self.worse, self.mean, self.sd_worse)):
            for seed, v in enumerate(rng.normal(mean, sd, seeds)):
                rows.append({"experiment": self.experiment, "dataset": self.dataset,
                             "model": model, "seed": seed, "status": "completed",
                             self.column: v, "epochs_trained": 1})
        return pd.DataFrame(rows)


# Shapes of the default (laptop) scale's per-seed tables: anode_images and affjord_images on
# digits8x8 (a substitute), affjord_toy on hash as the workstation measured it (the paper's
# effect: about 2 standard deviations), and claim 3 on the paper's MNIST with Table 1's numbers
# and spreads.
SHAPES = {
    "claim 3, digits8x8": Shape(3, "anode_images", "digits8x8", "test_accuracy_pct", "anode",
                                "node", 90.0, 1.3, 1.3, True),
    "claim 5, digits8x8": Shape(5, "affjord_images", "digits8x8", "test_bpd", "affjord",
                                "ffjord", 1.83, 0.01, 0.01, False),
    "claim 6, digits8x8": Shape(6, "affjord_images", "digits8x8", "nfe_train_mean",
                                "affjord_concat", "ffjord", 60.0, 5.0, 5.0, False),
    "claim 4, hash": Shape(4, "affjord_toy", "hash", "best_val_loss", "affjord", "ffjord",
                           1.11, 0.009, 0.009, False, substitute=False, paper_sd=2.0),
    "claim 3, MNIST": Shape(3, "anode_images", "mnist", "test_accuracy_pct", "anode", "node",
                            96.4, 0.1, 0.5, True, substitute=False,
                            paper={"anode": 98.2, "node": 96.4}, metric="test_accuracy_pct"),
}


def evidence_for(shape: Shape, table: pd.DataFrame) -> Evidence:
    """Evidence as the report builds it, at the paper's full training length."""
    numbers = {(shape.experiment, shape.dataset, m, shape.metric): v
               for m, v in (shape.paper or {}).items()}
    return Evidence({shape.experiment: table}, "simulated",
                    {shape.dataset: "a stand-in"} if shape.substitute else {},
                    protocol={shape.experiment: Protocol("", 1.0)}, paper_numbers=numbers)


def rates(shape: Shape, seeds: int, effect: float, sims: int = 1000, seed: int = 0
          ) -> dict[str, float]:
    """The share of ``sims`` simulated tables given each verdict."""
    rng = np.random.default_rng([seed, seeds, int(round(effect * 1e6))])
    c = CLAIMS.get(str(shape.claim))
    counts = Counter(judge(evidence_for(shape, shape.table(rng, seeds, effect)), c,
                           budgets=False)["verdict"] for _ in range(sims))
    return {v: counts[v] / sims for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)}


def _markdown(rows: list[dict[str, object]]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m odeflows.claims.calibration",
        description="Simulate per-seed tables through the claims engine and print how often "
                    "each verdict comes (Markdown).")
    p.add_argument("--sims", type=int, default=1000, help="tables per setting (default 1000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 5, 10],
                   help="seeds per model (default 2 3 5 10)")
    p.add_argument("--only", nargs="+", choices=sorted(SHAPES), metavar="SETTING",
                   help=f"these settings only (of: {'; '.join(SHAPES)})")
    args = p.parse_args(argv)
    rows = []
    for name, shape in SHAPES.items():
        if args.only and name not in args.only:
            continue
        sd = float(np.sqrt((shape.sd_better ** 2 + shape.sd_worse ** 2) / 2))
        paper = shape.paper_sd * sd if shape.paper_sd else None
        if shape.paper:
            b, w = shape.paper[shape.better], shape.paper[shape.worse]
            paper = (b - w) if shape.higher_is_better else (w - b)
        effects = [("no effect", 0.0)] + ([("half the paper's", paper / 2),
                                           ("the paper's", paper)] if paper else
                                          [("1 sd", sd), ("2 sd", 2 * sd)])
        for label, effect in effects:
            for n in args.seeds:
                r = rates(shape, n, effect, args.sims)
                rows.append({"setting": name, "true effect": f"{label} ({effect:+.3g})",
                             "seeds/model": n, "reproduced": f"{r[REPRODUCED]:.1%}",
                             "not reproduced": f"{r[NOT_REPRODUCED]:.1%}",
                             "inconclusive": f"{r[INCONCLUSIVE]:.1%}"})
    print(_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
