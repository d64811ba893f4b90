"""The `pktmask-nb` command: sanitize captures from a shell.

    pktmask-nb run INPUT... -o OUTPUT [--stages dedup,anonymize,mask]
    pktmask-nb demo [-o DIR]

Exit status: 0 on success, 1 when a capture is invalid or a stage fails,
2 for a usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import resources
from importlib.metadata import version
from pathlib import Path

from pktmask_nb.display import summary_frame
from pktmask_nb.errors import PktmaskError
from pktmask_nb.pipeline import Pipeline
from pktmask_nb.result import RunResult
from pktmask_nb.stage_options import STAGE_NAMES, add_stage_arguments, anonymizer, build_stages, finish_run

logger = logging.getLogger(__name__)

CAPTURE_SUFFIXES = {".pcap", ".pcapng", ".cap", ".dmp"}
DEMO_CAPTURE = "tls12-demo.pcap"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.handler(args)
    except (PktmaskError, ValueError, OSError) as error:
        print(f"pktmask-nb: error: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pktmask-nb",
        description="Sanitize pcap/pcapng captures: remove duplicates, anonymize IP addresses, "
        "mask payloads.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step (DEBUG)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('pktmask_nb')}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="sanitize captures",
        description="Sanitize capture files or a folder of captures. Stages run in the order "
        "dedup, anonymize, mask.",
    )
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="pcap/pcapng files, or one folder")
    run.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file for one input; output folder for several inputs or a folder "
        "(created if missing; it mirrors the input file names)",
    )
    run.add_argument(
        "--stages",
        default=",".join(STAGE_NAMES),
        help=f"comma-separated stages to run (default: {','.join(STAGE_NAMES)})",
    )
    _add_common_options(run)
    add_stage_arguments(run)
    run.set_defaults(handler=_run)

    demo = commands.add_parser(
        "demo",
        help="sanitize a small real capture shipped with the package",
        description="Run all stages on a 22-packet TLS 1.2 capture shipped with the package "
        "and write the result to DIR.",
    )
    demo.add_argument(
        "-o", "--output-dir", default=".", metavar="DIR", help="folder for the output (default: .)"
    )
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo.set_defaults(handler=_demo)
    return parser


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--on-unparseable",
        choices=("error", "drop"),
        default="error",
        help="what to do with a packet a stage cannot parse: stop with an error (default) "
        "or drop it from the output and count it",
    )
    parser.add_argument(
        "--keep-comments",
        action="store_true",
        help="keep pcapng comments and free-text options (dropped by default: they can hold private data)",
    )
    parser.add_argument(
        "--format",
        choices=("same", "pcap", "pcapng"),
        default="same",
        help="output file format (default: the input's); pcap needs one linktype in the whole capture",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run(args: argparse.Namespace) -> int:
    names = [name.strip() for name in args.stages.split(",") if name.strip()]
    stages = build_stages(names, args)
    pairs = plan_outputs([Path(p) for p in args.inputs], Path(args.output))
    pipeline = Pipeline(
        stages,
        on_unparseable=args.on_unparseable,
        keep_comments=args.keep_comments,
        progress=not args.no_progress and sys.stderr.isatty(),
        monitor_memory=False,
        output_format=args.format,
    )
    mappings = []
    for source, target in pairs:
        result = pipeline.run(source, target)
        _print_summary(result, all_counters=args.verbose)
        stage = anonymizer(stages)
        if stage is not None and args.mapping_out:
            mappings.append(stage.mapping())
        result.close()
    finish_run(stages, mappings, args)
    return 0


def plan_outputs(inputs: list[Path], output: Path) -> list[tuple[Path, Path]]:
    """Pair each input capture with its output path.

    One input file gives `output` itself (or `output/NAME` when `output` is an
    existing folder). A folder, or several files, give `output/NAME` for each
    capture, and the output folder is created. Raises ValueError when nothing
    to sanitize is found or two inputs share a name.
    """
    if len(inputs) == 1 and inputs[0].is_dir():
        folder = inputs[0]
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in CAPTURE_SUFFIXES)
        if not files:
            raise ValueError(
                f"{folder}: no capture files found (looked for {', '.join(sorted(CAPTURE_SUFFIXES))})"
            )
        subfolders = [p.name for p in folder.iterdir() if p.is_dir()]
        if subfolders:
            print(
                f"pktmask-nb: note: subfolders are not read: {', '.join(sorted(subfolders))}",
                file=sys.stderr,
            )
        return _into_folder(files, output)

    for path in inputs:
        if path.is_dir():
            raise ValueError(f"{path}: give either one folder or capture files, not both")
    if len(inputs) == 1 and not output.is_dir():
        return [(inputs[0], output)]
    return _into_folder(inputs, output)


def _into_folder(files: list[Path], folder: Path) -> list[tuple[Path, Path]]:
    names = [f.name for f in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"several inputs are named {', '.join(duplicates)}; the output folder needs unique names"
        )
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: is a file; give a folder as output for several inputs")
    if not folder.exists() and folder.suffix.lower() in CAPTURE_SUFFIXES:
        raise ValueError(
            f"{folder}: several captures need an output folder, and this name looks like a file; "
            "give a folder name"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return [(f, folder / f.name) for f in files]


def _print_summary(result: RunResult, *, all_counters: bool) -> None:
    print(
        f"{result.input_path} -> {result.output_path}: {result.packets_in} packets in, "
        f"{result.packets_out} out ({result.seconds:.2f} s)"
    )
    table = (result.stats if all_counters else summary_frame(result)).T
    if not table.empty:
        # Rows that are empty or zero for every stage only lengthen the table.
        always = {"packets_in", "packets_out"}
        shown = [row for row in table.index if row in always or (table.loc[row].fillna(0) != 0).any()]
        print(table.loc[shown].astype(object).where(table.loc[shown].notna(), "-").to_string())
    if result.skipped_blocks:
        skipped = ", ".join(f"{count} {name}" for name, count in result.skipped_blocks.items())
        print(f"pcapng blocks not copied (they can hold private data): {skipped}")


def _demo(args: argparse.Namespace) -> int:
    folder = Path(args.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    source = resources.files("pktmask_nb") / "data" / DEMO_CAPTURE
    with resources.as_file(source) as path:
        argv = ["run", str(path), "-o", str(folder / "tls12-demo-sanitized.pcap")]
        if args.no_progress:
            argv.append("--no-progress")
        status = main(argv)
    if status == 0:
        print(f"Wrote {folder / 'tls12-demo-sanitized.pcap'}; open it with tshark or Wireshark.")
    return status


if __name__ == "__main__":
    sys.exit(main())
