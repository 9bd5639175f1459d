"""Plot the learned number of groups of every DGConv layer (the DGConv paper's Fig. 2).

x: each DGConv layer's channels, in network order; y: its learned number of
groups. With several checkpoints (e.g. reproducibility runs), their curves
are overlaid. Works on training checkpoints (gates) and on checkpoints
written by ``dgconv_to_static.py`` (recorded group counts).

Example:
    python tools/analysis/plot_groups.py work_dirs/run1/epoch_100.pth \\
        work_dirs/run2/epoch_100.pth --out groups.png
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

import matplotlib  # noqa: E402

matplotlib.use('Agg')  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402

from mmdgconv.deploy import ConversionError  # noqa: E402
from mmdgconv.utils import load_checkpoint_safely  # noqa: E402


def learned_groups(checkpoint_path):
    """(channels, groups) of every DGConv layer, in network order.

    Raises:
        ConversionError: The checkpoint holds no DGConv gates and no
            recorded conversion.
    """
    try:
        checkpoint = load_checkpoint_safely(checkpoint_path,
                                            map_location='cpu')
    except (OSError, RuntimeError) as error:
        raise ConversionError(str(error)) from None
    state = checkpoint.get('state_dict', checkpoint)
    layers = []
    for key, gate in state.items():
        if not key.endswith('.gate'):
            continue
        weight = state[key[:-len('gate')] + 'weight']
        merged = int((gate >= 0).sum())
        layers.append((weight.shape[1], 2**(gate.numel() - merged)))
    if layers:
        return layers
    conversion = checkpoint.get('meta', {}).get('mmdgconv_conversion', {})
    if conversion.get('tool') == 'dgconv_to_static':
        keys = [k for k, v in state.items() if k.endswith('conv2.weight')
                and v.dim() == 4 and v.shape[2] == 3]
        return [(state[k].shape[1] * g, g)
                for k, g in zip(keys, conversion['groups'])]
    raise ConversionError(
        f'{checkpoint_path} holds no DGConv gates (and no recorded '
        'dgconv_to_static conversion)')


def plot(checkpoints, out, labels=None):
    labels = labels or [osp.basename(c) for c in checkpoints]
    figure, axis = plt.subplots(figsize=(10, 4))
    for checkpoint, label in zip(checkpoints, labels):
        layers = learned_groups(checkpoint)
        axis.plot(range(len(layers)), [g for _, g in layers], marker='o',
                  label=label)
        ticks = [str(c) for c, _ in layers]
    axis.set_xticks(range(len(ticks)))
    axis.set_xticklabels(ticks, rotation=90, fontsize=7)
    axis.set_yscale('log', base=2)
    axis.set_xlabel('channels of each DGConv layer (input to output)')
    axis.set_ylabel('learned number of groups')
    axis.set_title('Learned groups per DGConv layer')
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    handle, tmp = tempfile.mkstemp(suffix='.png',
                                   dir=osp.dirname(osp.abspath(out)))
    os.close(handle)
    try:
        figure.savefig(tmp, dpi=120)
        os.replace(tmp, out)  # the PNG appears complete or not at all
    finally:
        plt.close(figure)
        if osp.exists(tmp):
            os.remove(tmp)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoints', nargs='+')
    parser.add_argument('--out', default='groups.png', help='PNG to write')
    parser.add_argument('--labels', nargs='+', help='one per checkpoint')
    args = parser.parse_args()
    if args.labels and len(args.labels) != len(args.checkpoints):
        raise SystemExit('error: give one --labels entry per checkpoint')
    if not osp.isdir(osp.dirname(osp.abspath(args.out))):
        raise SystemExit(f'error: the directory of {args.out} does not exist')
    try:
        plot(args.checkpoints, args.out, args.labels)
    except ConversionError as error:
        raise SystemExit(f'error: {error}')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
