"""Plot the learned groups of every DGConv layer (DGConv paper, Fig. 2).

x: each DGConv layer's channels, in network order; y: its learned number of
groups. With several checkpoints (e.g. reproducibility runs), their curves
are overlaid. Works on training checkpoints (gates) and on checkpoints
written by ``dgconv_to_static.py`` (recorded group counts).

Example:
    python tools/analysis/plot_groups.py work_dirs/run1/epoch_100.pth \\
        work_dirs/run2/epoch_100.pth --out groups.png
"""
import argparse
import os.path as osp


import matplotlib

matplotlib.use('Agg')  # files only, no display

import matplotlib.pyplot as plt

from mmdgconv.deploy import ConversionError
from mmdgconv.models import DGConv2d
from mmdgconv.utils import load_checkpoint_safely
from mmdgconv.utils.atomic_write import write_atomically


def learned_groups(checkpoint_path):
    """(input channels, groups) of every DGConv layer, in network order,
    from the gates of a trained checkpoint or from the layer list a
    ``dgconv_to_static.py`` conversion records in ``meta``.

    Raises:
        ConversionError: The checkpoint holds no DGConv gates and no
            recorded conversion (or one from a converter too old to list
            its layers).
    """
    try:
        checkpoint = load_checkpoint_safely(checkpoint_path,
                                            map_location='cpu')
    except (OSError, RuntimeError) as error:
        raise ConversionError(str(error)) from None
    state = checkpoint.get('state_dict', checkpoint)
    layers = [(state[key[:-len('gate')] + 'weight'].shape[1],
               DGConv2d.groups_of(gate))
              for key, gate in state.items() if key.endswith('.gate')]
    if layers:
        return layers
    conversion = checkpoint.get('meta', {}).get('mmdgconv_conversion', {})
    if conversion.get('tool') == 'dgconv_to_static':
        if 'dgconv_layers' not in conversion:
            raise ConversionError(
                f'{checkpoint_path} was converted by an older '
                'dgconv_to_static.py, which did not record its layers; '
                'plot the trained checkpoint, or reconvert it')
        return [(row['in_channels'], row['groups'])
                for row in conversion['dgconv_layers']]
    raise ConversionError(
        f'{checkpoint_path} holds no DGConv gates (and no recorded '
        'dgconv_to_static conversion)')


def plot(checkpoints, out, labels=None):
    """Overlay the learned groups of each checkpoint in one PNG at
    ``out`` (written atomically).

    Returns:
        dict: label to the plotted ``(input channels, groups)`` per layer.
    """
    labels = labels or [osp.basename(c) for c in checkpoints]
    figure, axis = plt.subplots(figsize=(10, 4))
    plotted = {}
    for checkpoint, label in zip(checkpoints, labels):
        layers = plotted[label] = learned_groups(checkpoint)
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
    try:
        write_atomically(lambda f: figure.savefig(f, format='png', dpi=120),
                         out)
    finally:
        plt.close(figure)
    return plotted


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
