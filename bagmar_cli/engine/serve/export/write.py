"""`export_model`: write the export to a hidden sibling, check it, publish it, then write its sidecar."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bagmar_cli.checkpoint import file_sha256
from bagmar_cli.console import warn
from bagmar_cli.engine.evaluate.tta import parse_tta, tta_plan
from bagmar_cli.engine.restore import load_weights, model_from_checkpoint
from bagmar_cli.engine.serve.export.check import check_export
from bagmar_cli.engine.serve.export.formats import format_of
from bagmar_cli.engine.serve.export.options import ExportOptions
from bagmar_cli.engine.serve.export.serving import build_serving, served_posthoc
from bagmar_cli.engine.serve.export.sidecar import Sidecar, make_sidecar, sidecar_of
from bagmar_cli.errors import SettingError
from bagmar_cli.files import atomic_write, check_writable


def export_model(opts: ExportOptions) -> Path:
    """Write the export and its sidecar `<out>.json`; returns the export's path."""
    out, sidecar_path, fmt = opts.out_path, sidecar_of(opts.out_path), format_of(opts.format)
    ckpt = load_weights(opts.checkpoint, opts.weights)
    _check_writable(out, sidecar_path, Path(opts.checkpoint), opts.overwrite)
    posthoc = served_posthoc(ckpt, opts.tau, opts.method, opts.data)
    tta = parse_tta(opts.tta, ckpt.meta.settings.eval.tta)
    plan = tta_plan(tta, ckpt.meta.model)
    serving = build_serving(model_from_checkpoint(ckpt), posthoc, ckpt.meta.train_counts, opts.output, plan)
    if not fmt.fixed_batch and opts.batch is not None:
        warn("a fixed batch has no effect on a safetensors bundle (it runs any batch size)")
    sidecar = make_sidecar(ckpt, opts, serving.output, posthoc, tta, plan)
    checked = _publish(
        out,
        lambda path: fmt.write(path, serving, ckpt, sidecar),
        lambda path: check_export(path, sidecar, serving, ckpt, opts.data, plan) if opts.check else None,
    )
    sidecar |= {"sha256": file_sha256(out), "check": checked}
    Sidecar.model_validate(sidecar)  # what predict will read back
    atomic_write(sidecar_path, (json.dumps(sidecar, indent=2, allow_nan=False) + "\n").encode())
    return out


def _check_writable(out: Path, sidecar: Path, checkpoint: Path, overwrite: bool) -> None:
    """SettingError when the export would replace its own checkpoint, or an existing file without `overwrite`."""
    if out.resolve() == checkpoint.resolve():
        raise SettingError(f"`out` {out} is the checkpoint being exported; choose another path")
    for path in (out, sidecar):
        if path.exists() and not overwrite:
            raise SettingError(f"{path} already exists; pass `overwrite` to replace it, or choose another `out`")
        if path.is_dir():
            raise SettingError(f"{path} is a directory; choose another `out`")
        check_writable(path)


def _publish(out: Path, write: Callable[[Path], None], check: Callable[[Path], Any]) -> Any:
    """Write to a hidden sibling, check it, then rename it to `out`: a failed check leaves nothing behind."""
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        checked = check(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return checked
