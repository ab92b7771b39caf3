"""`bagmar eval CKPT...`: accuracy overall, by shot group, macro, per class, calibration and shifted priors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bagmar_cli.choices import PosthocMethod
from bagmar_cli.cli import options
from bagmar_cli.cli.app import app
from bagmar_cli.cli.tables import priors_table, report_table, summary_table
from bagmar_cli.console import note, result_json, show
from bagmar_cli.errors import SettingError

if TYPE_CHECKING:
    from bagmar_cli.engine.evaluate.report import Report


@app.command("eval")
def eval_command(
    checkpoints: Annotated[list[Path], typer.Argument(help="One or more bagmar .safetensors checkpoints.")],
    data: options.Data = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="Split to evaluate [default: the dataset's reported split: test; val for iNat]."),
    ] = None,
    tau: Annotated[str, typer.Option("--tau", help="auto (what tune-tau recorded), none, or a number.")] = "none",
    method: Annotated[
        PosthocMethod | None,
        options.choice(
            PosthocMethod, "--method", help="With --tau NUMBER (refused otherwise): pn, tau-norm, logit-adjust."
        ),
    ] = None,
    prior: Annotated[bool, typer.Option("--prior/--no-prior", help="Show accuracy under shifted test priors.")] = False,
    plots: Annotated[
        Path | None,
        typer.Option(
            "--plots",
            help="Folder for plots (default: beside the checkpoint, skipped with a warning there "
            "if it cannot be written).",
        ),
    ] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Write no plots.")] = False,
    as_json: options.Json = False,
    save_logits: Annotated[
        Path | None,
        typer.Option(
            "--save-logits",
            help="Write raw logits, the evaluated scores, labels, image paths, class names, method and τ "
            "(safetensors): to this file for one checkpoint, else into this folder, RUN-STEM.logits.safetensors each.",
        ),
    ] = None,
    device: options.Device = None,
    weights: options.Weights = None,
    tta: options.Tta = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Inference batch size.")] = 256,
) -> None:
    """Evaluate checkpoints on a split of their dataset (or of --data); several give mean ± std too."""
    from bagmar_cli.engine.evaluate.evaluator import evaluate, split_outputs
    from bagmar_cli.engine.evaluate.posthoc import resolve_posthoc
    from bagmar_cli.engine.evaluate.report import summarise
    from bagmar_cli.engine.evaluate.saved_logits import logits_paths

    _refuse_repeats(checkpoints)
    logits_files = logits_paths(save_logits, checkpoints) if save_logits else [None] * len(checkpoints)
    reports = []
    for ckpt, logits_file in zip(checkpoints, logits_files, strict=True):
        outputs = split_outputs(
            ckpt,
            data=data,
            split=split,
            device=device or "auto",
            batch_size=batch_size,
            features=method == "tau-norm" or tau == "auto",
            weights=weights,
            tta=tta,
        )
        posthoc = resolve_posthoc(outputs.ckpt, tau, method)
        folder = None if no_plots else (plots or ckpt.parent)
        report = evaluate(outputs, posthoc, save_logits=logits_file, plots=folder, plots_asked=plots is not None)
        _show(report, prior)
        reports.append(report)
    payload: dict[str, Any] = reports[0].to_json()
    if len(reports) > 1:
        summary = summarise(reports)
        show(summary_table(summary, len(reports)))
        payload = {"checkpoints": [report.to_json() for report in reports], "summary": summary}
    if as_json:
        result_json(payload)


def _refuse_repeats(checkpoints: list[Path]) -> None:
    """The same file twice would count twice in the mean ± std."""
    seen: dict[Path, Path] = {}
    for path in checkpoints:
        key = path.resolve()
        if key in seen:
            raise SettingError(
                f"checkpoint {path} is given twice (as {seen[key]}); each seed counts once in mean ± std"
            )
        seen[key] = path


def _show(report: Report, prior: bool) -> None:
    title = f"{report.checkpoint} on {report.split}"
    if report.posthoc:
        title += f" with {report.posthoc.method} τ={report.posthoc.tau:g}"
    if report.tta != "none":
        title += f", TTA {report.tta}"
    show(report_table(report, title=title))
    if prior:
        show(priors_table(report.shifted_priors))
    if report.selected_on_reported_split:
        note(f"this checkpoint's epoch was selected on the {report.split} split it reports.")
    if report.tuned_on_reported_split:
        note(f"τ was tuned on the {report.split} split it reports.")
