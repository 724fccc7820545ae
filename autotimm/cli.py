"""The ``autotimm`` command line.

- ``autotimm fit | validate | test | predict | check --config run.yaml``: config-driven runs
  (LightningCLI, see :mod:`autotimm.config.cli`);
- ``autotimm schema [-o FILE]``: the JSON Schema of config files, for editors;
- ``autotimm data synthetic --task T --out DIR``: a small dataset the example configs read;
- ``autotimm losses list|show`` and ``autotimm demo``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autotimm.losses import LossEntry

__all__ = ["main"]


def _losses_list(args: argparse.Namespace) -> int:
    from autotimm.losses import get_loss_registry

    registry = get_loss_registry()
    names = registry.list_losses(args.task)
    if args.json:
        rows = []
        for name in names:
            entry = registry.get_entry(name)
            rows.append(
                {
                    "name": entry.name,
                    "tasks": list(entry.tasks),
                    "aliases": list(entry.aliases),
                    "expects": entry.expects,
                    "target": entry.target,
                    "class_dim": entry.class_dim,
                    "soft_targets": entry.soft_targets,
                    "class_weights": entry.class_weights,
                    "class_weights_broadcast": entry.class_weights_broadcast,
                    "builds_for_caller": entry.builds_for_caller,
                    "class": f"{entry.loss_class.__module__}.{entry.loss_class.__qualname__}",
                }
            )
        print(json.dumps(rows, indent=2))
        return 0
    table = [("name", "tasks", "aliases", "expects")]
    for name in names:
        entry = registry.get_entry(name)
        table.append(
            (
                entry.name,
                ",".join(entry.tasks) or "custom",
                ",".join(entry.aliases) or "-",
                "as fed" if entry.builds_for_caller else entry.expects,
            )
        )
    _print_table(table)
    return 0


def _losses_show(args: argparse.Namespace) -> int:
    from autotimm.losses import get_loss_registry
    from autotimm.losses._parameters import plain_text

    entry = get_loss_registry().get_entry(args.name)
    if args.json:
        print(json.dumps(entry.schema.model_json_schema(), indent=2))
        return 0
    width = shutil.get_terminal_size().columns
    print(f"{entry.name}  ({entry.class_path})")
    summary = plain_text(entry.loss_class.__doc__ or "").strip().splitlines()
    if summary:
        print(textwrap.indent(plain_text(summary[0], width - 2), "  "))
    facts = [
        f"tasks: {', '.join(entry.tasks) or 'custom'}",
        f"aliases: {', '.join(entry.aliases) or '-'}",
        *(
            ["takes: what its caller feeds (each part gets what it takes)"]
            if entry.builds_for_caller
            else [f"expects: {entry.expects}", f"targets: {_targets_text(entry)}"]
        ),
    ]
    line = ""
    for fact in facts:  # as many per line as fit
        if line and len(line) + 3 + len(fact) > width - 2:
            print(f"  {line}")
            line = ""
        line = f"{line}   {fact}" if line else fact
    print(f"  {line}")
    print()
    table = [("parameter", "type", "default", "constraint", "description")]
    for p in entry.parameters:
        default = "(required)" if p.required else repr(p.default)
        description = plain_text(p.description or "")
        table.append((p.name, p.base_type, default, p.constraint or "-", description))
    _print_table(table, width=width)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from autotimm.demo import parse_losses, run_demo

    losses = parse_losses(args.losses)
    run_demo(
        losses,
        epochs=args.epochs,
        image_size=args.image_size,
        out=args.out,
        seed=args.seed,
        backbone=args.backbone,
    )
    return 0


def _schema(args: argparse.Namespace) -> int:
    from autotimm.config.cli import import_modules
    from autotimm.config.problems import format_problems
    from autotimm.config.schema import config_json_schema

    problems = import_modules(_split_modules(args.imports), [Path.cwd()])
    if problems:
        print(f"autotimm schema: error: {format_problems(problems)}", file=sys.stderr)
        return 2
    text = json.dumps(config_json_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"autotimm schema: wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _split_modules(values: Sequence[str]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _data_synthetic(args: argparse.Namespace) -> int:
    from autotimm.data import synthetic

    makers = {
        "classification": (synthetic.make_classification_dataset, "images_per_class"),
        "segmentation": (synthetic.make_segmentation_dataset, "num_train"),
        "detection": (synthetic.make_detection_dataset, "num_train"),
        "instance_segmentation": (synthetic.make_instance_segmentation_dataset, "num_train"),
    }
    make, count_argument = makers[args.task]
    options: dict[str, Any] = {"image_size": args.image_size, "seed": args.seed}
    if args.num_classes is not None:
        options["num_classes"] = args.num_classes
    if args.count is not None:
        options[count_argument] = args.count
    root = make(args.out, **options)
    print(f"autotimm data synthetic: wrote a {args.task} dataset to {root}")
    return 0


def _targets_text(entry: LossEntry) -> str:
    """``class_indices (multiclass); dense (multilabel, binary)`` for a loss with modes."""
    return "; ".join(
        f"{kind} ({', '.join(modes)})" if modes else kind
        for kind, modes in entry.targets_by_mode().items()
    )


_NBSP = "\u00a0"  # textwrap does not break at it


def _wrap_type(cell: str, width: int) -> list[str]:
    """Wrap a type or default only after ``,`` and around ``|``, so that ``float >= 0`` and
    ``weight: float = 1.0`` stay on one line."""
    return [line.replace(_NBSP, " ") for line in textwrap.wrap(_glue(cell), width)] or [""]


def _glue(cell: str) -> str:
    return cell.replace(" ", _NBSP).replace(f",{_NBSP}", ", ").replace(f"{_NBSP}|{_NBSP}", " | ")


def _print_table(rows: Sequence[Sequence[Any]], width: int | None = None) -> None:
    """Columns padded to their widest cell. With ``width``, the last column wraps to fit; when
    the other columns leave it too little room, it goes on indented lines below its row; when
    they are wider than ``width`` themselves, their widest one wraps too (a long ``Literal``
    type such as ``'multiclass' | 'multilabel' | 'binary'``)."""
    text = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in text) for i in range(len(text[0]))]
    fixed = sum(widths[:-1]) + 2 * (len(widths) - 2)
    room = None if width is None else width - 2 - len(text[0][-1])  # and the last header
    if room is not None and fixed > room:
        widest = max(range(len(widths) - 1), key=widths.__getitem__)
        tokens = [t for row in text for t in _glue(row[widest]).split(" ")]  # unbreakable parts
        widths[widest] = max(widths[widest] - (fixed - room), min(max(map(len, tokens)), 30))
    indent = sum(widths[:-1]) + 2 * (len(widths) - 1)
    below = width is not None and width - indent < 24
    if width is not None:
        widths[-1] = min(widths[-1], width - (4 if below else indent))
    for index, row in enumerate(text):
        *cells, last = row
        columns = [_wrap_type(c, w) if len(c) > w else [c] for c, w in zip(cells, widths)]
        fixed_lines = [
            "  ".join((col[k] if k < len(col) else "").ljust(w) for col, w in zip(columns, widths))
            for k in range(max((len(col) for col in columns), default=1))
        ]
        lines = textwrap.wrap(last, widths[-1]) if width is not None else [last]
        if below and index > 0:
            print("\n".join(line.rstrip() for line in fixed_lines))
            for line in lines:
                print(f"    {line}")
            continue
        for k in range(max(len(fixed_lines), len(lines), 1)):
            left = fixed_lines[k] if k < len(fixed_lines) else " " * (indent - 2)
            right = lines[k] if k < len(lines) else ""
            print("  ".join([left, right] if cells else [right]).rstrip())
        if index == 0:
            rule = [*widths[:-1], len(last) if below else widths[-1]]
            print("  ".join("-" * w for w in rule))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autotimm", description="Train timm backbones with Lightning and registry losses."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    losses = commands.add_parser("losses", help="list and inspect registered losses")
    loss_commands = losses.add_subparsers(dest="loss_command", required=True)
    listing = loss_commands.add_parser("list", help="list registered losses")
    listing.add_argument("--task", help="classification, detection, segmentation or custom")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_losses_list)
    show = loss_commands.add_parser("show", help="show one loss's parameters")
    show.add_argument("name", help="loss name or alias")
    show.add_argument("--json", action="store_true", help="print the JSON schema")
    show.set_defaults(handler=_losses_show)

    demo = commands.add_parser(
        "demo",
        help="compare segmentation losses on a generated dataset",
        description="Generate a small synthetic segmentation dataset, train a SemanticSegmentor "
        "once per loss, print a results table and write a comparison figure.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument(
        "--losses",
        default="dice,focal_pixelwise,combined_segmentation",
        help="comma-separated registry names, each optionally with :key=value arguments, "
        "e.g. 'dice,focal_pixelwise:gamma=3'",
    )
    demo.add_argument("--epochs", type=int, default=10, help="training epochs per loss")
    demo.add_argument("--image-size", type=int, default=64, help="image side in pixels")
    demo.add_argument("--out", default="autotimm_demo", help="output folder")
    demo.add_argument("--seed", type=int, default=0, help="seed for data and training")
    demo.add_argument("--backbone", default="resnet10t", help="timm backbone (pretrained=False)")
    demo.set_defaults(handler=_demo)

    for name, text in _CONFIG_COMMAND_HELP.items():
        # parsed by LightningCLI (see main); listed here for `autotimm --help`
        commands.add_parser(name, help=text, add_help=False)

    schema = commands.add_parser(
        "schema",
        help="write the JSON Schema of config files (editor completion and checks)",
        description="Write a JSON Schema (draft 2020-12) for autotimm config files: the models, "
        "data modules and trainer with their arguments, and every loss argument as a choice of "
        "the registered losses with their parameters. Put "
        "'# yaml-language-server: $schema=autotimm.schema.json' at the top of a config.",
    )
    schema.add_argument("-o", "--output", help="file to write (default: standard output)")
    schema.add_argument(
        "--imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="modules to import first, e.g. one with @register_loss classes (repeatable, or "
        "comma-separated)",
    )
    schema.set_defaults(handler=_schema)

    data = commands.add_parser("data", help="datasets for the example configs")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    synthetic = data_commands.add_parser(
        "synthetic",
        help="write a small synthetic dataset (coloured shapes, real files)",
        description="Write a small dataset of coloured shapes in the layout the task's data "
        "module reads (class folders, PNG masks or COCO JSON).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    synthetic.add_argument(
        "--task",
        required=True,
        choices=["classification", "segmentation", "detection", "instance_segmentation"],
    )
    synthetic.add_argument("--out", required=True, help="output directory")
    synthetic.add_argument("--image-size", type=int, default=64, help="image side in pixels")
    synthetic.add_argument(
        "--num-classes", type=int, default=None, help="classes (default: the generator's)"
    )
    synthetic.add_argument(
        "--count",
        type=int,
        default=None,
        help="training images (per class for classification; default: the generator's)",
    )
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.set_defaults(handler=_data_synthetic)
    return parser


_CONFIG_COMMAND_HELP = {
    "fit": "train from a config: autotimm fit --config run.yaml (see autotimm fit --help)",
    "validate": "validate a checkpoint: autotimm validate --config run.yaml --ckpt_path C",
    "test": "test a checkpoint: autotimm test --config run.yaml --ckpt_path C",
    "predict": "predict with a checkpoint and write the outputs to files",
    "check": "check a config completely and print it resolved, without training",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the process exit code.

    Example: ``main(["losses", "show", "dice"])`` prints the dice loss's parameter table.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in _CONFIG_COMMAND_HELP:
        from autotimm.config.cli import run_config_command

        return run_config_command(arguments)
    args = build_parser().parse_args(arguments)
    try:
        code: int = args.handler(args)
    except ValueError as error:  # unknown names and tasks: the message is the whole story
        print(f"autotimm: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `autotimm losses list | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
