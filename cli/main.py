"""``netreduce`` command line.

Library commands (no server): ``baseline`` trains a base model and prints its row and per-layer
table; ``measure`` counts size and operations of a JSON layer spec without training; ``compress``
runs one job in this process and prints its rows (``cli.compress_local``). ``up`` runs the
service on this machine; ``submit``, ``status``, ``comparison`` and ``recommend`` talk to a running API.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from compress.result_columns import MEASUREMENT_SUMMARY


def _layer_table(m, title: str) -> Table:  # noqa: ANN001
    t = Table(title=title)
    for col in ("layer", "type", "output", "params", "MACs", "act ops", "MACs %", "params %"):
        t.add_column(col, justify="right" if col not in ("layer", "type") else "left")
    for r in m.layers:
        t.add_row(
            r.name,
            r.type,
            "×".join(map(str, r.output_shape)),
            f"{r.params:,}",
            f"{r.macs:,}",
            f"{r.activation_ops:,}",
            f"{100 * r.macs_share:.1f}",
            f"{100 * r.params_share:.1f}",
        )
    return t


ROW_FIELDS = MEASUREMENT_SUMMARY


def _row_table(m, label: str) -> Table:  # noqa: ANN001
    t = Table(title=label)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for c in ROW_FIELDS:
        v = getattr(m, c)
        t.add_row(c, "—" if v is None else f"{v:,.3f}" if isinstance(v, float) else f"{v:,}")
    return t


def cmd_baseline(args: argparse.Namespace) -> int:
    import torch

    from compress.architectures import get_architecture
    from compress.baseline import resolve_spec, train_baseline
    from compress.datasets import load_dataset
    from compress.persistence import save_model
    from compress.training import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    arch = get_architecture(args.model)
    dataset = args.dataset or arch.default_dataset
    data = load_dataset(dataset, root=args.data_root, seed=args.seed)
    spec = resolve_spec(args.model, data.input_shape, max(arch.num_classes, data.num_classes))
    given = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size}
    cfg = TrainConfig(**{**arch.training, **{k: v for k, v in given.items() if v is not None}, "seed": args.seed})

    def progress(frac: float, stage: str) -> None:
        if not args.json:
            console.print(f"[dim]{100 * frac:5.1f}%  {stage}[/dim]")

    result = train_baseline(spec, data, cfg, progress=progress)
    if args.save:
        save_model(result.model, spec, args.save)
    m = result.measurement
    if args.json:
        out = {
            "label": "baseline",
            "model": args.model,
            "dataset": dataset,
            "seed": args.seed,
            **m.model_dump(mode="json"),
        }
        print(json.dumps(out, indent=2))
    else:
        out_console = Console()
        out_console.print(_row_table(m, f"{args.model} on {dataset}"))
        out_console.print(_layer_table(m, "per layer"))
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from compress.baseline import resolve_spec
    from compress.layer_spec import build_model
    from compress.measure import measure

    layers = json.loads(Path(args.spec).read_text())
    if isinstance(layers, dict):
        layers = layers.get("layers", layers)
    shape = tuple(int(v) for v in args.input_shape.split(","))
    if len(shape) != 3:
        raise SystemExit("--input-shape takes C,H,W, e.g. 1,28,28")
    spec = resolve_spec(layers, shape)
    m = measure(build_model(spec), spec, data=None, latency=False)
    if args.json:
        print(m.model_dump_json(indent=2))
    else:
        Console().print(_row_table(m, Path(args.spec).name))
        Console().print(_layer_table(m, "per layer"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netreduce", description="Measure how small and cheap a network can get.")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("baseline", help="train a base model and print its row and per-layer table")
    b.add_argument("--model", default="digits-cnn")
    b.add_argument("--dataset", default=None, help="data set spec (default: the architecture's)")
    b.add_argument("--epochs", type=int, default=None, help="default: the architecture's")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--lr", type=float, default=None)
    b.add_argument("--batch-size", type=int, default=None)
    b.add_argument("--threads", type=int, default=0)
    b.add_argument("--data-root", default="data")
    b.add_argument("--save", default=None, help="write the trained model to this .safetensors file")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_baseline)
    m = sub.add_parser("measure", help="size and operations of a JSON layer spec, untrained")
    m.add_argument("--spec", required=True)
    m.add_argument("--input-shape", required=True, help="C,H,W")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_measure)
    from cli.client import add_parsers as add_client_parsers
    from cli.compress_local import add_parser as add_compress_parser
    from cli.up import add_parser as add_up_parser

    add_compress_parser(sub)
    add_up_parser(sub)
    add_client_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError) as exc:
        print(f"netreduce: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
