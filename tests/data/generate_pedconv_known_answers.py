"""Regenerate ``pedconv_known_answers.pt`` from the official PEDConv layer.

The official ``Variational_DYConv2d`` (zejiangh/PEDConv,
``image_classification/resnet.py``) is run in training mode (with its logit
noise, recorded here so the tests can replay it) and in eval mode. Its
training objective, from that repository's ``training.py``, is the task loss
plus ``0.001 * sum_layers IMLoss``; here the task loss is
``sum(out * grad_out)``. For each case the fixture stores the official state
dict, the input, the noise, the output, the information-maximisation loss and
the gradient of the objective with respect to the input and every parameter.

The tests never import the official code; they compare against the answers
this script stored. Run it only to refresh the fixture:

    python tests/data/generate_pedconv_known_answers.py \\
        ../shared/reference/pedconv_official
"""
import argparse
import os.path as osp
import sys

import torch

#: The official training.py: ``loss += 0.001 * mse``.
INFO_MAX_WEIGHT = 0.001

# name: (in, out, kernel, stride, padding, groups, batch, size, mode)
CASES = {
    'k3_train': (32, 32, 3, 1, 1, 1, 2, 6, 'train'),
    'k1_train': (32, 64, 1, 1, 0, 1, 2, 5, 'train'),
    'k3_s2_groups2_train': (32, 32, 3, 2, 1, 2, 3, 8, 'train'),
    'k3_deep_train': (32, 64, 3, 1, 1, 1, 2, 4, 'train'),  # few pixels
    'k3_batch1_train': (16, 32, 3, 1, 1, 1, 1, 6, 'train'),
    'k3_eval': (32, 32, 3, 1, 1, 1, 2, 6, 'eval'),
    'k3_batch1_eval': (32, 64, 3, 1, 1, 1, 1, 4, 'eval'),
}


def run_case(layer_cls, case, generator):
    cin, cout, k, s, p, g, batch, size, mode = case
    torch.manual_seed(int(torch.randint(0, 2**31, (1,),
                                        generator=generator)))
    layer = layer_cls(cin, cout, k, stride=s, padding=p, groups=g)
    with torch.no_grad():  # "trained": generator weights away from N(0, .01)
        for name, param in layer.named_parameters():
            if name != 'weight':
                param.copy_(0.3 * torch.randn(param.shape,
                                              generator=generator))
    layer.train(mode == 'train')
    state = {k: v.detach().clone() for k, v in layer.state_dict().items()}
    x = torch.randn(batch, cin, size, size, generator=generator,
                    requires_grad=True)
    seed = int(torch.randint(0, 2**31, (1,), generator=generator))
    torch.manual_seed(seed)
    out = layer(x)
    # The forward's only random draws: the noise of the inp, oup and k
    # heads, in that order (Variational_Attn4d.reparameterize).
    torch.manual_seed(seed)
    noise = dict(inp=torch.randn(batch, cin // g), oup=torch.randn(
        batch, cout), k=torch.randn(batch, k * k))
    grad_out = torch.randn(out.shape, generator=generator)
    info_max_loss = layer.attn.IMLoss
    objective = (out * grad_out).sum()
    if mode == 'train':
        objective = objective + INFO_MAX_WEIGHT * info_max_loss
    objective.backward()
    grads = {name: p.grad.detach().clone()
             for name, p in layer.named_parameters() if p.grad is not None}
    return dict(
        conv=dict(in_channels=cin, out_channels=cout, kernel_size=k,
                  stride=s, padding=p, groups=g), mode=mode, state=state,
        x=x.detach().clone(), noise=noise if mode == 'train' else None,
        out=out.detach().clone(), grad_out=grad_out,
        info_max_loss=(info_max_loss.detach().clone()
                       if mode == 'train' else None),
        info_max_weight=INFO_MAX_WEIGHT, grad_x=x.grad.clone(), grads=grads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('official_dir', help='folder of ped_layers.py')
    parser.add_argument(
        '--out', default=osp.join(osp.dirname(__file__),
                                  'pedconv_known_answers.pt'))
    args = parser.parse_args()
    sys.path.insert(0, osp.abspath(args.official_dir))
    from ped_layers import Variational_DYConv2d  # noqa: E402

    torch.set_default_dtype(torch.float64)
    generator = torch.Generator().manual_seed(0)
    answers = {name: run_case(Variational_DYConv2d, case, generator)
               for name, case in CASES.items()}
    torch.save(answers, args.out)
    print(f'wrote {len(answers)} cases to {args.out}')


if __name__ == '__main__':
    main()
