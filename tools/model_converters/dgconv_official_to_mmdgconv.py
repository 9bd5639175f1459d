"""Convert a checkpoint of the DGConv reference implementation (G_ResNet).

Writes an mmpretrain G-ResNeXt classifier checkpoint and a backbone-only
checkpoint (``backbone.*`` keys) for the detection and TSN configs'
``init_cfg=dict(type='Pretrained', prefix='backbone.')``. Both are checked by
loading them with ``strict=True`` into the model the classifier config
builds, and written atomically.

Example:
    python tools/model_converters/dgconv_official_to_mmdgconv.py \\
        g_resnext50.pth.tar checkpoints/g-resnext50-32x4d_in1k.pth \\
        checkpoints/g-resnext50-32x4d_backbone.pth
"""
import argparse
import os.path as osp


from mmengine.config import DictAction

from mmdgconv.apis import load_config
from mmdgconv.deploy import (ConversionError, build_model,
                             check_output_path, save_pair_atomically)
from mmdgconv.deploy.official_import import \
    reference_to_mmpretrain
from mmdgconv.utils import load_checkpoint_safely

DEFAULT_CONFIG = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'g_resnext', 'g-resnext50-32x4d_8xb32_in1k.py')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='reference G_ResNet checkpoint')
    parser.add_argument('out_classifier', help='mmpretrain classifier .pth')
    parser.add_argument('out_backbone', help='backbone-only .pth')
    parser.add_argument(
        '--config', default=DEFAULT_CONFIG,
        help='classifier config to check against (default: G-ResNeXt-50 '
        '32x4d ImageNet)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        metavar='KEY=VALUE',
                        help='e.g. model.backbone.depth=101 '
                        'model.backbone.base_width=8')
    return parser.parse_args()


def convert(args):
    if osp.abspath(args.out_classifier) == osp.abspath(args.out_backbone):
        raise ConversionError(
            f'the classifier and the backbone would both be written to '
            f'{args.out_classifier}; give two different paths')
    for out in (args.out_classifier, args.out_backbone):
        check_output_path(out, args.checkpoint)
    try:
        checkpoint = load_checkpoint_safely(args.checkpoint)
    except (OSError, RuntimeError) as error:
        raise ConversionError(str(error)) from None
    if not isinstance(checkpoint, dict):
        raise ConversionError(
            f'{args.checkpoint} holds a {type(checkpoint).__name__}, not a '
            'state dict')
    state = checkpoint.get('state_dict', checkpoint)
    try:
        classifier, backbone = reference_to_mmpretrain(state)
    except KeyError as error:
        raise ConversionError(f'{args.checkpoint}: {error.args[0]}') from None
    cfg = load_config(args.config, args.cfg_options)
    cfg.model.head.num_classes = classifier['head.fc.weight'].shape[0]
    model = build_model(cfg)
    try:
        model.load_state_dict(classifier, strict=True)
    except RuntimeError as error:
        raise ConversionError(
            f'{args.checkpoint} does not match the classifier of '
            f'{args.config} (set depth/groups/base_width with --cfg-options):'
            f' {error}') from None
    meta = dict(source=osp.abspath(args.checkpoint),
                tool='dgconv_official_to_mmdgconv')
    save_pair_atomically(
        (dict(meta=meta, state_dict=classifier), args.out_classifier),
        (dict(meta=dict(meta), state_dict=backbone), args.out_backbone))
    print(f'wrote {args.out_classifier} ({len(classifier)} tensors) and '
          f'{args.out_backbone} ({len(backbone)} tensors)')


def main():
    args = parse_args()
    try:
        convert(args)
    except (ConversionError, FileNotFoundError) as error:
        raise SystemExit(f'error: {error}')


if __name__ == '__main__':
    main()
