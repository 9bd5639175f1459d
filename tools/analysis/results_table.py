"""Evaluate trained checkpoints and print the papers' result tables.

Each CONFIG CHECKPOINT pair runs through its toolbox's own test loop
(mmengine's Runner with the config's evaluator) and becomes one row, laid
out by task: detection as G-ResNeXt's COCO table (AP, AP.5, AP.75, APl, APm,
APs, parameters, backbone FLOPs with DGConv counted by nnz(U), batch-1
latency), action recognition as its Kinetics table (top-1, top-5),
classification as PEDConv's ImageNet table (FLOPs, run-time, top-1).

Example:
    python tools/analysis/results_table.py \\
        configs/g_resnext/faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py \\
        work_dirs/g50/epoch_12.pth \\
        configs/coc/retinanet_r50-coc_fpn_1x_coco.py work_dirs/coc/epoch_12.pth \\
        --out table.md --csv table.csv --json table.json
"""
import argparse
import tempfile


from mmdgconv.analysis import (ResultsTableError, build_rows,
                               to_csv, to_json, to_markdown)
from mmdgconv.deploy import ConversionError
from mmdgconv.deploy.checkpoint_io import (check_output_path,
                                           write_atomically)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'pairs', nargs='+', metavar='CONFIG CHECKPOINT',
        help='config and checkpoint of each model, in pairs')
    parser.add_argument('--out', help='also write the markdown table here')
    parser.add_argument('--csv', help='also write a CSV here')
    parser.add_argument('--json', help='also write the rows as JSON here')
    parser.add_argument(
        '--size', type=int, default=224,
        help='input size of the FLOPs and latency measurements '
        '(default: 224)')
    parser.add_argument(
        '--work-dir', help='where the test runs write their logs '
        '(default: a temporary directory)')
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error('give the models as CONFIG CHECKPOINT pairs; '
                     f'{args.pairs[-1]} has no partner')
    return args


def check_writable(paths) -> None:
    """Stop before any evaluation if an output cannot be written (probed by
    writing a real file there, as the converters do)."""
    for path in filter(None, paths):
        try:
            check_output_path(path)
        except ConversionError as error:
            raise ResultsTableError(str(error)) from None


def main():
    args = parse_args()
    pairs = list(zip(args.pairs[::2], args.pairs[1::2]))
    outputs = {args.out: to_markdown, args.csv: to_csv, args.json: to_json}
    try:
        check_writable(outputs)
        with tempfile.TemporaryDirectory() as scratch:
            rows = build_rows(pairs, args.work_dir or scratch, args.size,
                              progress=lambda line: print(line, flush=True))
    except ResultsTableError as error:
        raise SystemExit(f'error: {error}')
    print(to_markdown(rows))
    for path, render in outputs.items():
        if path:
            text = render(rows)
            write_atomically(lambda f, text=text: f.write(text), path,
                             binary=False)
            print(f'wrote {path}')


if __name__ == '__main__':
    main()
