"""Re-parameterise every CoC layer of a checkpoint into a plain conv.

Works for any model the config builds (a detector, a recogniser or a
classifier): every ``CoCConv2d`` anywhere in it is converted, not only those
of ``model.backbone``. The output loads with ``strict=True`` into the model
of the matching ``*_deploy.py`` config (``deploy=True``), keeps the input's
``meta``, and is written atomically.

Example:
    python tools/model_converters/coc_to_static.py \\
        configs/coc/retinanet_r50-coc_fpn_1x_coco.py train.pth static.pth \\
        --verify
"""
import argparse


import torch
from mmengine.config import DictAction

from mmdgconv.deploy import (ConversionError,
                             check_output_path, save_atomically,
                             switch_to_deploy)
from mmdgconv.deploy.conversion import (TOLERANCE,
                                        check_unchanged, conversion_meta,
                                        load_trained)
from mmdgconv.deploy.progress import Progress
from mmdgconv.models.layers import CoCConv2d


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the (training) config of the model')
    parser.add_argument('checkpoint', help='the trained checkpoint')
    parser.add_argument('out', help='where to write the static checkpoint')
    parser.add_argument(
        '--verify', action='store_true',
        help='compare outputs on a 224x224 random batch (otherwise a tiny '
        'one) and fail above %g max abs difference' % TOLERANCE)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        metavar='KEY=VALUE', help='override config settings')
    return parser.parse_args()


def convert(args) -> float:
    check_output_path(args.out, args.checkpoint, args.config)
    progress = Progress(3)
    progress(f'building the model of {args.config}, loading '
             f'{args.checkpoint} and running it on a random batch')
    trained = load_trained(args.config, args.checkpoint, args.cfg_options,
                           224 if args.verify else 64)
    model = trained.model
    layers = [m for m in model.modules()
              if isinstance(m, CoCConv2d) and not m.deploy]
    if not layers:
        raise ConversionError(
            f'the model built from {args.config} has no CoC layer to '
            're-parameterise (is it already a deploy config?)')

    progress(f're-parameterising {len(layers)} CoC layers and verifying')
    switch_to_deploy(model)  # backbones also record their form
    difference = check_unchanged(trained, model, args.out)
    print(f'converted {len(layers)} CoC layers; max abs output difference '
          f'{difference:.3g} on a {tuple(trained.inputs.shape)} random batch')

    progress(f'writing {args.out}')
    meta = conversion_meta(trained, 'coc_to_static', args.checkpoint,
                           layers=len(layers), max_abs_difference=difference)
    save_atomically(
        dict(meta=meta, state_dict={
            k: v.detach().clone() for k, v in model.state_dict().items()
        }), args.out)
    print(f'wrote {args.out}')
    return difference


def main():
    args = parse_args()
    torch.manual_seed(0)
    try:
        convert(args)
    except (ConversionError, FileNotFoundError) as error:
        raise SystemExit(f'error: {error}')


if __name__ == '__main__':
    main()
