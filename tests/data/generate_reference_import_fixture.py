"""Regenerate ``reference_import_fixture.pt`` from the DGConv authors'
reference
G_ResNet (groups=2, width_per_group=4, 10 classes).

The fixture keeps the reference state dict's names and shapes, the
deterministic procedure that fills it (:func:`fill`, which the test repeats)
and the reference's logits on a fixed input, so the test checks the import
against the reference without importing it and without storing megabytes of
weights. Run only to refresh it:

    python tests/data/generate_reference_import_fixture.py ../shared/reference
"""
import argparse
import os.path as osp
import sys

import torch

FILL_SEED = 0
INPUT_SHAPE = (2, 3, 64, 64)


def fill(shapes, seed=FILL_SEED):
    """Deterministic tensors for a state dict's (name, shape) list."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes:
        value = torch.randn(shape, generator=generator)
        if name.endswith('running_var'):
            value = value.abs() + 0.5
        elif name.endswith(('bn1.weight', 'bn2.weight', 'bn3.weight')):
            value = value.abs() * 0.5 + 0.5
        elif name.endswith('.gate'):
            value = value * 0.5
        elif name.endswith('weight') and len(shape) == 4:
            value = value * (2.0 / (shape[1] * shape[2] * shape[3]))**0.5
        state[name] = value
    return state


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('reference_dir')
    args = parser.parse_args()
    sys.path.insert(0, osp.abspath(args.reference_dir))
    from g_resnext import Bottleneck, G_ResNet  # d-li14/dgconv.pytorch
    model = G_ResNet(Bottleneck, [3, 4, 6, 3], num_classes=10, groups=2,
                     width_per_group=4)
    state = model.state_dict()
    shapes = [(k, tuple(v.shape)) for k, v in state.items()
              if v.dtype.is_floating_point and not k.endswith(('.D', '.I'))]
    filled = fill(shapes)
    state.update(filled)
    model.load_state_dict(state)
    model.eval()
    x = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, _ = model(x)
    constants = {k: v.clone() for k, v in model.state_dict().items()
                 if k.endswith(('.D', '.I'))}
    torch.save(dict(shapes=shapes, constants=constants, input=x,
                    logits=logits, num_batches_tracked=[
                        k for k in state if k.endswith('num_batches_tracked')
                    ]),
               osp.join(osp.dirname(__file__), 'reference_import_fixture.pt'))
    print('wrote the fixture:', len(shapes), 'tensors, logits',
          tuple(logits.shape))


if __name__ == '__main__':
    main()
