"""ONNX export of deployed models (tools/deployment/pytorch2onnx.py): the
file runs in onnxruntime and gives PyTorch's outputs; training forms are
refused with the converter to run."""
import os.path as osp
import runpy
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from mmengine.config import Config

from mmdgconv.deploy import build_model
from mmdgconv.deploy.onnx_export import (TrainingFormError, export_onnx,
                                         verify_onnx)
from mmdgconv.testing import randomise_norms

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
NARROW_NECK = dict(neck=dict(in_channels=[64, 128, 256, 512]))
CASES = {
    # name: (config, backbone overrides, model overrides, expected kind)
    'PED-ResNet-18 classifier': (
        'pedconv/ped-resnet18_8xb32_in1k.py',
        dict(base_channels=16, ped_cfg=dict(reduction=4)),
        dict(head=dict(in_channels=128)), 'classifier'),
    'deployed ResNet-CoC RetinaNet': (
        'coc/retinanet_r50-coc_fpn_1x_coco_deploy.py',
        dict(base_channels=16, init_cfg=None), NARROW_NECK, 'detector'),
    'PED-ResNet-50 Faster R-CNN': (
        'pedconv/faster-rcnn_ped-r50_fpn_1x_coco.py',
        dict(base_channels=16, ped_cfg=dict(reduction=4), init_cfg=None),
        NARROW_NECK, 'two-stage detector'),
    'P4ResNet-50 TSN': (
        'tsn/tsn_imagenet-pretrained-p4-r50_8xb32-1x1x3-100e_kinetics400-'
        'rgb.py', dict(base_channels=16, init_cfg=None),
        dict(cls_head=dict(in_channels=256)), 'recognizer'),
}


def _config(name):
    path, backbone, extra, _ = CASES[name]
    cfg = Config.fromfile(osp.join(REPO, 'configs', path))
    cfg.model.backbone.update(backbone)
    cfg.merge_from_dict(dict(model=extra))
    return cfg


def _randomised(model):
    """Norm statistics and affines away from their initial values, so the
    export is checked on a model that has 'trained'."""
    return randomise_norms(model)


@pytest.mark.parametrize('name', sorted(CASES))
def test_onnxruntime_gives_the_pytorch_outputs(name, tmp_path):
    model = _randomised(build_model(_config(name)))
    out = str(tmp_path / 'model.onnx')
    graph, inputs = export_onnx(model, out, (64, 64))
    assert graph.kind == CASES[name][3]
    assert verify_onnx(out, graph, inputs) < 1e-4

    # Independently of the exporter's own check: a fresh input, the
    # toolbox's own tensor forward.
    proto = onnx.load(out)
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ['input']
    x = torch.randn(*inputs.shape)
    session = onnxruntime.InferenceSession(
        out, providers=['CPUExecutionProvider'])
    actual = session.run(None, {'input': x.numpy()})
    with torch.no_grad():
        if graph.kind == 'classifier':
            expected = [model(x, mode='tensor')]
        elif graph.kind == 'recognizer':
            expected = [model.extract_feat(x, stage='head')[0]]
        elif graph.kind == 'detector':
            cls_scores, box_deltas = model.bbox_head(model.extract_feat(x))
            expected = list(cls_scores) + list(box_deltas)
        else:
            features = model.extract_feat(x)
            scores, deltas = model.rpn_head(features)
            expected = list(features) + list(scores) + list(deltas)
    assert len(actual) == len(expected)
    for ort, ref in zip(actual, expected):
        np.testing.assert_allclose(ort, ref.numpy(), rtol=1e-4,
                                   atol=1e-4 * float(ref.abs().max()))


@pytest.mark.parametrize('config,backbone,converter', [
    ('g_resnext/g-resnext50-32x4d_8xb32_in1k.py',
     dict(groups=4, base_width=4, base_channels=16), 'dgconv_to_static.py'),
    ('coc/resnet50-coc_8xb32_in1k.py', dict(base_channels=16),
     'coc_to_static.py'),
])
def test_training_forms_are_refused_with_the_converter(
        config, backbone, converter, tmp_path):
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    cfg.model.backbone.update(backbone)
    cfg.model.head.in_channels = 512
    out = tmp_path / 'model.onnx'
    with pytest.raises(TrainingFormError, match=converter) as error:
        export_onnx(build_model(cfg), str(out), (64, 64))
    assert str(error.value).startswith('backbone.')  # the layer is named
    assert not out.exists() and not list(tmp_path.iterdir())


def _tool(monkeypatch, *args):
    monkeypatch.setattr(sys, 'argv', ['pytorch2onnx.py', *args])
    runpy.run_path(osp.join(REPO, 'tools', 'deployment', 'pytorch2onnx.py'),
                   run_name='__main__')


def test_the_tool_exports_a_checkpoint_and_verifies_it(
        tmp_path, monkeypatch, capsys):
    cfg = _config('PED-ResNet-18 classifier')
    config = str(tmp_path / 'ped18.py')
    cfg.dump(config)
    model = _randomised(build_model(cfg))
    checkpoint = str(tmp_path / 'ped18.pth')
    torch.save(dict(meta={}, state_dict=model.state_dict()), checkpoint)
    out = str(tmp_path / 'onnx' / 'ped18.onnx')  # the folder is created
    _tool(monkeypatch, config, checkpoint, out, '--shape', '48', '64',
          '--verify')
    printed = capsys.readouterr().out
    assert f'wrote {out} (input (1, 3, 48, 64), classifier)' in printed
    assert 'onnxruntime matches PyTorch' in printed
    session = onnxruntime.InferenceSession(
        out, providers=['CPUExecutionProvider'])
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        expected = model(x, mode='tensor').numpy()
    np.testing.assert_allclose(session.run(None, {'input': x.numpy()})[0],
                               expected, rtol=1e-4, atol=1e-5)

    # Bad input stops in one line naming the file; nothing is written.
    for args, message in (
            ((config, str(tmp_path / 'nope.pth'), str(tmp_path / 'a.onnx')),
             'nope.pth does not exist'),
            ((config, checkpoint, '/proc/a.onnx'), 'cannot write'),
            ((config, checkpoint, checkpoint), 'refusing to overwrite')):
        with pytest.raises(SystemExit) as exit_info:
            _tool(monkeypatch, *args)
        assert message in str(exit_info.value)
    assert not (tmp_path / 'a.onnx').exists()


def test_deployed_g_resnext_with_interleaved_groups(tmp_path):
    """Learned (random, so interleaved) groups folded into a plain grouped
    ResNeXt: onnxruntime gives what the training-form model computes."""
    from mmdgconv.deploy.dgconv_static import convert_model
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'g_resnext', 'g-resnext50-32x4d_8xb32_in1k.py'))
    cfg.model.backbone.update(groups=4, base_width=4, base_channels=16)
    cfg.model.head.in_channels = 512
    model = _randomised(build_model(cfg))
    torch.manual_seed(1)
    gates = [layer.gate for layer in model.backbone.dgconv_layers()]
    with torch.no_grad():
        for gate in gates:
            gate.copy_(torch.randn_like(gate))
    # mixed gates (neither depthwise nor dense) give strided channel groups
    assert any(0 < int((g >= 0).sum()) < len(g) for g in gates)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        trained = model(x, mode='tensor').numpy()
    rows = convert_model(model)
    assert any(row['folded'] for row in rows)
    out = str(tmp_path / 'g50.onnx')
    graph, inputs = export_onnx(model, out, (64, 64))
    assert verify_onnx(out, graph, inputs) < 1e-4
    session = onnxruntime.InferenceSession(
        out, providers=['CPUExecutionProvider'])
    np.testing.assert_allclose(session.run(None, {'input': x.numpy()})[0],
                               trained, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('batch', [1, 2])
def test_every_pedconv_form_exports(batch, tmp_path, monkeypatch):
    """Column, per-sample-matrix, folded and scaled forms, each traced as
    the exporter sees it (a deep layer forced into the column form even at
    batch 1, where only the largest layers take it)."""
    import dataclasses

    from mmdgconv.models.layers import PEDConv2d
    from mmdgconv.models.layers.tuning import TUNINGS
    monkeypatch.setitem(TUNINGS, 'cpu', dataclasses.replace(
        TUNINGS['cpu'], ped_batch1_columns_min_weight=0))
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        PEDConv2d(8, 32, 3, padding=1, reduction=4),  # scaled / folded
        PEDConv2d(32, 96, 3, stride=2, padding=1, reduction=4),  # columns
        PEDConv2d(96, 16, 1, reduction=4),  # per-sample matrices (batch 2)
    ).eval()
    forms = []
    rank1_form = PEDConv2d._rank1_form

    def record(self, *args):
        forms.append(rank1_form(self, *args))
        return forms[-1]

    monkeypatch.setattr(PEDConv2d, '_rank1_form', record)
    x = torch.randn(batch, 8, 16, 16)
    path = str(tmp_path / 'ped.onnx')
    with torch.no_grad():
        torch.onnx.export(model, (x, ), path, input_names=['input'],
                          opset_version=17, dynamo=False)
        expected = model(x).numpy()
    assert 'columns' in forms
    assert ('matmul' if batch == 2 else 'folded') in forms
    session = onnxruntime.InferenceSession(
        path, providers=['CPUExecutionProvider'])
    np.testing.assert_allclose(session.run(None, {'input': x.numpy()})[0],
                               expected, rtol=1e-4, atol=1e-5)
