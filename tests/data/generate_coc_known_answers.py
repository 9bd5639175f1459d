"""Regenerate ``coc_known_answers.pt`` from the official CoC layer.

The official ``Coc2d`` (Genera1Z/ConvolutionOfConvolution,
``mmcls/models/coc/layers.py``) is run option by option on "trained"
parameters: every norm affine, running statistic and super kernel is drawn
away from its initial value. For each case the fixture stores the official
state dict, the input, the output, the gradient of ``sum(out * grad_out)``
with respect to the input and to every parameter, and, for batch-norm cases in
training mode, the running statistics after the forward.

The tests never import the official code; they compare against the answers
this script stored. Run it only to refresh the fixture:

    python tests/data/generate_coc_known_answers.py \\
        ../shared/reference/coc_official
"""
import argparse
import os.path as osp
import sys

import torch

#: The official ResNet setting (its ``resnet*_coc`` configs).
RESNET = dict(sa=2, sk_plus=2, skip=True, dilat=True, wsc=True, share='ci',
              ws='LN', both=True, sbn='LN')

# name: (conv args, official Coc2d options, input size, mode)
CASES = {
    # The ResNet setting: a bottleneck 3x3, odd channels (padded tiles) with
    # stride 2, the 7x7 stem, a grouped conv and a dilated conv.
    'resnet_c16': (dict(in_channels=16, out_channels=16, kernel_size=3,
                        padding=1, bias=False), RESNET, 9, 'train'),
    'resnet_odd_s2': (dict(in_channels=5, out_channels=7, kernel_size=3,
                           stride=2, padding=1, bias=True), RESNET, 11,
                      'train'),
    'resnet_stem': (dict(in_channels=3, out_channels=6, kernel_size=7,
                         stride=2, padding=3, bias=False), RESNET, 15,
                    'train'),
    'resnet_groups2_dil2': (dict(in_channels=8, out_channels=12,
                                 kernel_size=3, padding=2, dilation=2,
                                 groups=2, bias=False), RESNET, 9, 'train'),
    'resnet_eval': (dict(in_channels=8, out_channels=10, kernel_size=3,
                         padding=1, bias=True), RESNET, 9, 'eval'),
    # Super-kernel geometry away from (3, 2): the lookup table's other entries
    # and the undilated super kernels.
    'k3_skplus4': (dict(in_channels=8, out_channels=8, kernel_size=3,
                        padding=1, bias=False), dict(RESNET, sk_plus=4), 9,
                   'train'),
    'k3_skplus6': (dict(in_channels=8, out_channels=8, kernel_size=3,
                        padding=1, bias=False), dict(RESNET, sk_plus=6), 9,
                   'train'),
    'k5_skplus4': (dict(in_channels=6, out_channels=8, kernel_size=5,
                        padding=2, bias=False), dict(RESNET, sk_plus=4), 9,
                   'train'),
    'k7_skplus6': (dict(in_channels=3, out_channels=4, kernel_size=7,
                        padding=3, bias=False), dict(RESNET, sk_plus=6), 9,
                   'train'),
    'k5_skplus0': (dict(in_channels=4, out_channels=8, kernel_size=5,
                        padding=2, bias=False),
                   dict(RESNET, sk_plus=0, dilat=False), 9, 'train'),
    'undilated_k3_skplus2': (dict(in_channels=8, out_channels=8,
                                  kernel_size=3, padding=1, bias=False),
                             dict(RESNET, dilat=False), 9, 'train'),
    'undilated_k3_skplus4': (dict(in_channels=8, out_channels=6,
                                  kernel_size=3, padding=1, bias=False),
                             dict(RESNET, dilat=False, sk_plus=4), 9,
                             'train'),
    'nonsquare_3x5': (dict(in_channels=4, out_channels=8,
                           kernel_size=(3, 5), padding=(1, 2), bias=False),
                      RESNET, 9, 'train'),
    'sa3_padded': (dict(in_channels=4, out_channels=10, kernel_size=3,
                        padding=1, bias=False), dict(RESNET, sa=3), 9,
                   'train'),
    'no_skip': (dict(in_channels=8, out_channels=8, kernel_size=3, padding=1,
                     bias=False), dict(RESNET, skip=False), 9, 'train'),
    # The official layer's own defaults: no super standardisation, a batch
    # norm after the super conv, standardised final kernels.
    'defaults_train': (dict(in_channels=8, out_channels=8, kernel_size=3,
                            padding=1, bias=True), dict(), 9, 'train'),
    'defaults_eval': (dict(in_channels=8, out_channels=6, kernel_size=3,
                           padding=1, bias=True), dict(), 9, 'eval'),
    # Super conv without a norm after it (it then has a bias), and with one.
    'wsc_only': (dict(in_channels=8, out_channels=8, kernel_size=3,
                      padding=1, bias=False),
                 dict(wsc=True, both=False, ws='LN'), 9, 'train'),
    'wsc_both_bn': (dict(in_channels=8, out_channels=8, kernel_size=3,
                         padding=1, bias=False),
                    dict(wsc=True, both=True, sbn='BN', ws=False), 9,
                    'train'),
    'sbn_in': (dict(in_channels=8, out_channels=8, kernel_size=3, padding=1,
                    bias=False), dict(sbn='IN', ws=True), 9, 'train'),
    # Every way of sharing the super kernels.
    'share_co_bn': (dict(in_channels=6, out_channels=8, kernel_size=3,
                         padding=1, bias=False),
                    dict(share='co', sbn='BN', ws='LN'), 9, 'train'),
    'share_co_eval': (dict(in_channels=6, out_channels=8, kernel_size=3,
                           padding=1, bias=False),
                      dict(share='co', sbn='BN', ws='LN'), 9, 'eval'),
    'share_none_in': (dict(in_channels=4, out_channels=8, kernel_size=3,
                           padding=1, bias=False),
                      dict(share=None, sbn='IN', ws='LN'), 9, 'train'),
    'share_none_wsc': (dict(in_channels=4, out_channels=6, kernel_size=3,
                            padding=1, bias=False),
                       dict(share=None, wsc=True, both=False, ws=True), 9,
                       'train'),
    'share_cico_bn': (dict(in_channels=4, out_channels=8, kernel_size=3,
                           padding=1, bias=False),
                      dict(share='cico', sbn='BN', ws='LN'), 9, 'train'),
    'share_cico_wsc': (dict(in_channels=4, out_channels=7, kernel_size=3,
                            padding=1, bias=False),
                       dict(share='cico', wsc=True, both=False, ws='LN'), 9,
                       'train'),
    # Every final-kernel norm.
    'ws_false': (dict(in_channels=8, out_channels=8, kernel_size=3,
                      padding=1, bias=False), dict(RESNET, ws=False), 9,
                 'train'),
    'ws_true': (dict(in_channels=8, out_channels=8, kernel_size=3, padding=1,
                     bias=False), dict(RESNET, ws=True), 9, 'train'),
    'ws_in': (dict(in_channels=8, out_channels=6, kernel_size=3, padding=1,
                   bias=False), dict(RESNET, ws='IN'), 9, 'train'),
    'ws_layernorm2d': (dict(in_channels=8, out_channels=6, kernel_size=3,
                            padding=1, bias=False),
                       dict(RESNET, ws='LayerNorm2d'), 9, 'train'),
    'ws_bn_train': (dict(in_channels=8, out_channels=8, kernel_size=3,
                         padding=1, bias=False), dict(RESNET, ws='BN'), 9,
                    'train'),
    'ws_bn_eval': (dict(in_channels=8, out_channels=8, kernel_size=3,
                        padding=1, bias=False), dict(RESNET, ws='BN'), 9,
                   'eval'),
}


@torch.no_grad()
def train_the_parameters(layer, generator):
    """Move every parameter and statistic away from its initial value."""
    for name, tensor in layer.state_dict(keep_vars=True).items():
        if name == 'weight':  # the unused placeholder of the official layer
            continue
        if name.endswith('num_batches_tracked'):
            continue
        shape = tensor.shape
        if name.endswith('running_var'):
            value = torch.rand(shape, generator=generator) + 0.5
        elif name.endswith('running_mean'):
            value = 0.2 * torch.randn(shape, generator=generator)
        elif name == 'weight9' or name == 'bias':
            continue  # drawn by the layer's own init
        elif 'conv_super.conv' in name:
            value = 0.3 * torch.randn(shape, generator=generator)
        elif name.endswith('weight'):  # norm scales
            value = 0.5 + torch.rand(shape, generator=generator)
        else:  # norm shifts
            value = 0.2 * torch.randn(shape, generator=generator)
        tensor.copy_(value)


def run_case(coc2d_cls, conv, options, size, mode, generator):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,),
                                        generator=generator)))
    layer = coc2d_cls(**conv, **options)
    train_the_parameters(layer, generator)
    layer.train(mode == 'train')
    state = {k: v.detach().clone() for k, v in layer.state_dict().items()
             if k != 'weight'}
    x = torch.randn(2, conv['in_channels'], size, size, generator=generator,
                    requires_grad=True)
    out = layer(x)
    grad_out = torch.randn(out.shape, generator=generator)
    (out * grad_out).sum().backward()
    grads = {name: p.grad.detach().clone()
             for name, p in layer.named_parameters() if p.grad is not None}
    stats_after = {k: v.detach().clone()
                   for k, v in layer.state_dict().items()
                   if k.endswith(('running_mean', 'running_var'))}
    return dict(conv=conv, options=options, mode=mode, state=state,
                x=x.detach().clone(), grad_out=grad_out,
                out=out.detach().clone(), grad_x=x.grad.clone(),
                grads=grads, stats_after=stats_after)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('official_dir', help='folder of coc_layers.py')
    parser.add_argument(
        '--out', default=osp.join(osp.dirname(__file__),
                                  'coc_known_answers.pt'))
    args = parser.parse_args()
    sys.path.insert(0, osp.abspath(args.official_dir))
    from coc_layers import Coc2d  # noqa: E402  (the official layer)

    torch.set_default_dtype(torch.float64)  # the answers to 1e-12
    generator = torch.Generator().manual_seed(0)
    answers = {name: run_case(Coc2d, *case, generator)
               for name, case in CASES.items()}
    torch.save(answers, args.out)
    print(f'wrote {len(answers)} cases to {args.out}')


if __name__ == '__main__':
    main()
