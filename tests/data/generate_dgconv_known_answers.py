"""Regenerate ``dgconv_known_answers.pt`` from the DGConv authors' reference
DGConv (d-li14/dgconv.pytorch).

The tests never import the reference; they compare against the answers this
script stored. Run it only to refresh the fixture:

    python tests/data/generate_dgconv_known_answers.py ../shared/reference
"""
import argparse
import os.path as osp
import sys

import torch

CASES = [
    # name, channels, kernel, stride, padding, dilation, bias, gates
    ('c8_k3_mixed', 8, 3, 1, 1, 1, True, [0.3, -0.2, 0.7]),
    ('c16_k3_s2_d2', 16, 3, 2, 2, 2, False, [-0.5, 0.1, -1e-8, 0.4]),
    ('c4_k1_dense', 4, 1, 1, 0, 1, True, [1e-8, 0.2]),
    ('c32_k3_depthwise', 32, 3, 1, 1, 1, False, [-0.1] * 5),
]
REGULARISER_WEIGHT = 1e-3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('reference_dir')
    parser.add_argument(
        '--out', default=osp.join(osp.dirname(__file__),
                                  'dgconv_known_answers.pt'))
    args = parser.parse_args()
    sys.path.insert(0, osp.abspath(args.reference_dir))
    from dgconv import DGConv2d  # noqa: E402  (d-li14/dgconv.pytorch)

    torch.manual_seed(0)
    answers = {}
    for name, c, k, s, p, d, bias, gates in CASES:
        ref = DGConv2d(c, c, k, stride=s, padding=p, dilation=d, bias=bias)
        with torch.no_grad():
            ref.gate.copy_(torch.tensor(gates))
        x = torch.randn(2, c, 9, 9, requires_grad=True)
        out, regulariser = ref(x)
        grad_out = torch.randn_like(out)
        loss = (out * grad_out).sum() + REGULARISER_WEIGHT * regulariser
        loss.backward()
        answers[name] = dict(
            channels=c, kernel=k, stride=s, padding=p, dilation=d, bias=bias,
            gate=ref.gate.detach().clone(),
            weight=ref.conv.weight.detach().clone(),
            bias_value=None if not bias else ref.conv.bias.detach().clone(),
            x=x.detach().clone(), grad_out=grad_out,
            out=out.detach().clone(), regulariser=regulariser.detach().clone(),
            grad_x=x.grad.clone(), grad_weight=ref.conv.weight.grad.clone(),
            grad_bias=None if not bias else ref.conv.bias.grad.clone(),
            grad_gate=ref.gate.grad.clone(),
            regulariser_weight=REGULARISER_WEIGHT)
    torch.save(answers, args.out)
    print(f'wrote {len(answers)} cases to {args.out}')


if __name__ == '__main__':
    main()
