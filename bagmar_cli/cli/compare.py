"""`bagmar compare A B` or `bagmar compare A1 A2 --vs B1 B2`: is the difference between checkpoints real?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bagmar_cli.choices import PosthocMethod
from bagmar_cli.cli import options
from bagmar_cli.cli.app import app
from bagmar_cli.cli.tables import pct
from bagmar_cli.console import result_json, show
from bagmar_cli.errors import SettingError

if TYPE_CHECKING:
    from bagmar_cli.engine.evaluate.compare import Comparison

VS = "--vs"


@app.command("compare", context_settings={"ignore_unknown_options": True})
def compare_command(
    checkpoints: Annotated[
        list[str],
        typer.Argument(
            help="A B (two checkpoints), or A1 A2 ... --vs B1 B2 ... (groups of seeds, resampled hierarchically).",
            metavar="CHECKPOINT",
        ),
    ],
    data: options.Data = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split", help="Split to compare on [default: the dataset's reported split: test; val for iNat]."
        ),
    ] = None,
    tau: Annotated[
        str, typer.Option("--tau", help="auto (each checkpoint's own τ from tune-tau), none, or a number.")
    ] = "none",
    method: Annotated[
        PosthocMethod | None,
        options.choice(
            PosthocMethod, "--method", help="With --tau NUMBER (refused otherwise): pn, tau-norm, logit-adjust."
        ),
    ] = None,
    resamples: Annotated[int, typer.Option("--resamples", min=1, help="Bootstrap and permutation draws.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the resampling (same seed, same numbers).")] = 0,
    level: Annotated[float, typer.Option("--level", help="Confidence level of the intervals.")] = 0.95,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PNG of per-class differences against training images.")
    ] = None,
    as_json: options.Json = False,
    device: options.Device = None,
    weights: options.Weights = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Inference batch size.")] = 256,
) -> None:
    """Paired intervals and p-values for top-1, macro and many/medium/few accuracy of A minus B on the same images."""
    from bagmar_cli.engine.evaluate.compare import CompareOptions, compare_checkpoints, verdict

    a, b = split_sides(checkpoints)
    if not 0.0 < level < 1.0:
        raise SettingError(f"--level {level:g}: expected a number between 0 and 1, such as 0.95")
    comparison = compare_checkpoints(
        CompareOptions(
            a, b, split, tau, method, data, device or "auto", batch_size, weights, resamples, seed, level, plot
        )
    )
    show(compare_table(comparison))
    for name, metric in comparison.metrics.items():
        show(verdict(name, metric, level))
    if as_json:
        result_json(comparison.to_json())


def split_sides(words: list[str]) -> tuple[list[Path], list[Path]]:
    """`A B` or `A1 ... --vs B1 ...` -> the two sides; any other option-like word is refused."""
    unknown = [word for word in words if word.startswith("-") and word != VS]
    if unknown:
        raise SettingError(f"no such option: {unknown[0]}")
    if VS in words:
        at = words.index(VS)
        a, b = words[:at], words[at + 1 :]
        if VS in b or not a or not b:
            raise SettingError("use A1 [A2 ...] --vs B1 [B2 ...]: one --vs with checkpoints on both sides")
    elif len(words) == 2:
        a, b = words[:1], words[1:]
    else:
        raise SettingError(f"compare takes two checkpoints (A B) or two groups (A1 A2 --vs B1 B2), got {len(words)}")
    return [Path(word) for word in a], [Path(word) for word in b]


def compare_table(comparison: Comparison) -> Table:
    """One row per metric: A, B, A − B and its interval in points, the p-value and the test that gave it."""
    first = comparison.a[0]
    sides = (
        f"{len(comparison.a)} vs {len(comparison.b)} checkpoints" if len(comparison.a) + len(comparison.b) > 2 else ""
    )
    level = f"{100 * comparison.options.level:g} %"
    table = Table(
        title=f"A − B on {first.split} ({first.labels.numel()} images) {sides}".rstrip(), title_justify="left"
    )
    for column in ("metric", "A", "B", "A − B", f"{level} CI", "p", "test"):
        table.add_column(column, justify="left" if column in ("metric", "test") else "right")
    for name, metric in comparison.metrics.items():
        ci = "-" if metric.ci is None else f"{100 * metric.ci[0]:+.1f} to {100 * metric.ci[1]:+.1f}"
        diff = "-" if metric.diff is None else f"{100 * metric.diff:+.1f}"
        p_value = "-" if metric.p_value is None else f"{metric.p_value:.3g}"
        table.add_row(name, pct(metric.a), pct(metric.b), diff, ci, p_value, metric.test)
    return table
