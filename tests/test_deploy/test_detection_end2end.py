"""End-to-end detector export (``pytorch2onnx.py --end2end``): the ONNX
graph, run in onnxruntime, gives the detections mmdet's own ``predict``
gives, post-processing and NMS included."""
import os.path as osp
import runpy
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from mmengine.config import Config

from mmdgconv.deploy import ConversionError, build_model
from mmdgconv.deploy.detection_end2end import (end2end_graph,
                                               match_detections,
                                               predict_detections)
from mmdgconv.deploy.onnx_export import export_onnx
from mmdgconv.testing import randomise_norms

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
NARROW = dict(base_channels=16, init_cfg=None)
NARROW_NECK = dict(neck=dict(in_channels=[64, 128, 256, 512]))
SHAPE = (128, 160)
DETECTORS = {
    # name: (config, backbone overrides)
    'Faster R-CNN, PED-ResNet-50': (
        'pedconv/faster-rcnn_ped-r50_fpn_1x_coco.py',
        dict(NARROW, ped_cfg=dict(reduction=4))),
    'Mask R-CNN, deployed ResNet-50-CoC': (
        'coc/mask-rcnn_r50-coc_fpn_1x_coco_deploy.py', NARROW),
    'RetinaNet, deployed ResNet-50-CoC': (
        'coc/retinanet_r50-coc_fpn_1x_coco_deploy.py', NARROW),
}


def _config(name):
    path, backbone = DETECTORS[name]
    cfg = Config.fromfile(osp.join(REPO, 'configs', path))
    cfg.model.backbone.update(backbone)
    cfg.merge_from_dict(dict(model=NARROW_NECK))
    return cfg


def _trained_like(model):
    """Norm statistics away from their initial values, and score layers
    whose outputs spread as a trained detector's do (at initialisation
    every score is nearly the same, and the order of near-ties is not a
    property of the export)."""
    randomise_norms(model)
    torch.manual_seed(0)
    with torch.no_grad():
        if hasattr(model, 'rpn_head'):
            model.rpn_head.rpn_cls.weight.normal_(0, 0.3)
            model.rpn_head.rpn_reg.weight.normal_(0, 0.05)
            model.roi_head.bbox_head.fc_cls.weight.normal_(0, 0.3)
        else:
            model.bbox_head.retina_cls.weight.normal_(0, 0.003)
            model.bbox_head.retina_cls.bias.fill_(-2.0)
    return model.eval()


def _assert_same_detections(actual, expected):
    dets, labels = actual
    assert dets.dtype == np.float32 and labels.dtype == np.int64
    assert dets.shape[:2] == labels.shape and dets.shape[2] == 5
    # Same number, and paired one to one by value (label, box, score):
    # scores equal to the last bits may come in either order.
    assert match_detections(actual, expected) < 1e-4


def test_matching_detections_pairs_by_value_and_finds_differences():
    dets = torch.tensor([[[0., 0., 10., 10., .9], [5., 5., 20., 20., .9],
                          [1., 2., 3., 4., .5]]])
    labels = torch.tensor([[1, 2, 1]])
    swapped = (dets[:, [1, 0, 2]], labels[:, [1, 0, 2]])
    assert match_detections(swapped, (dets, labels)) == 0
    for changed, message in (
            ((dets[:, :2], labels[:, :2]), '2 detections, expected 3'),
            ((dets, torch.tensor([[1, 1, 1]])), 'no detection matches'),
            ((dets + torch.tensor([0., 0., 0., 0., 1e-3]), labels),
             'no detection matches')):
        with pytest.raises(ConversionError, match=message):
            match_detections(changed, (dets, labels))


# (Faster R-CNN runs end to end through the tools below, with a G-ResNeXt.)
@pytest.mark.parametrize('name', ['Mask R-CNN, deployed ResNet-50-CoC',
                                  'RetinaNet, deployed ResNet-50-CoC'])
def test_onnxruntime_gives_the_detections_of_predict(name, tmp_path):
    model = _trained_like(build_model(_config(name)))
    out = str(tmp_path / 'detector.onnx')
    _, inputs = export_onnx(model, out, SHAPE, end2end=True)

    proto = onnx.load(out)
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ['input']
    assert [o.name for o in proto.graph.output] == ['dets', 'labels']
    ops = {node.op_type for node in proto.graph.node}
    assert 'NonMaxSuppression' in ops
    assert ('RoiAlign' in ops) == hasattr(model, 'roi_head')

    session = onnxruntime.InferenceSession(
        out, providers=['CPUExecutionProvider'])
    max_per_img = (model.test_cfg.rcnn if hasattr(model, 'roi_head') else
                   model.test_cfg).max_per_img
    for seed in (1, 2):  # inputs the graph was not traced with
        x = torch.randn(1, 3, *SHAPE,
                        generator=torch.Generator().manual_seed(seed))
        expected = predict_detections(model, x)
        assert 0 < expected[1].shape[1] <= max_per_img
        # the scores come sorted, as mmdet gives them
        scores = expected[0][0, :, 4]
        assert torch.all(scores[:-1] >= scores[1:])
        _assert_same_detections(session.run(None, {'input': x.numpy()}),
                                expected)
    _assert_same_detections(session.run(None, {'input': inputs.numpy()}),
                            predict_detections(model, inputs))


def test_few_detections_and_none(tmp_path):
    """A score threshold that leaves a handful, and one that leaves none:
    the graph's K follows the data."""
    model = _trained_like(build_model(_config(
        'RetinaNet, deployed ResNet-50-CoC')))
    x = torch.randn(1, 3, *SHAPE)
    scores = predict_detections(model, x)[0][0, :, 4]
    # between the 4th and 5th score, away from both (onnxruntime's scores
    # differ from PyTorch's in the last bits); then above the first
    assert scores[3] - scores[4] > 1e-5
    for threshold, count in (((scores[3] + scores[4]) / 2, 4),
                             (scores[0] + 1e-3, 0)):
        model.test_cfg.score_thr = float(threshold)
        out = str(tmp_path / f'retinanet_{count}.onnx')
        export_onnx(model, out, SHAPE, end2end=True)
        session = onnxruntime.InferenceSession(
            out, providers=['CPUExecutionProvider'])
        actual = session.run(None, {'input': x.numpy()})
        assert actual[0].shape == (1, count, 5)
        assert actual[1].shape == (1, count)
        _assert_same_detections(actual, predict_detections(model, x))


def test_what_end2end_does_not_cover_is_refused(tmp_path):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'coc',
                                   'resnet50-coc_8xb32_in1k_deploy.py'))
    cfg.model.backbone.update(base_channels=16)
    cfg.model.head.in_channels = 512
    out = tmp_path / 'classifier.onnx'
    with pytest.raises(ConversionError, match='for mmdet detectors'):
        export_onnx(build_model(cfg), str(out), (64, 64), end2end=True)
    assert not list(tmp_path.iterdir())

    model = _trained_like(build_model(_config(
        'Faster R-CNN, PED-ResNet-50')))
    model.test_cfg.rcnn.nms = dict(type='soft_nms', iou_threshold=0.5)
    with pytest.raises(ConversionError, match='test_cfg.rcnn.nms'):
        end2end_graph(model, SHAPE)
    graph = end2end_graph(_trained_like(build_model(_config(
        'Faster R-CNN, PED-ResNet-50'))), SHAPE)
    with pytest.raises(ConversionError, match=r'one image of \(128, 160\)'):
        graph(torch.randn(1, 3, 64, 64))


def _tool(monkeypatch, path, *args):
    monkeypatch.setattr(sys, 'argv', [osp.basename(path), *args])
    runpy.run_path(osp.join(REPO, 'tools', path), run_name='__main__')


def test_the_tools_deploy_a_g_resnext_faster_rcnn_end_to_end(
        tmp_path, monkeypatch, capsys):
    """The user's path: a G-ResNeXt Faster R-CNN with learned (mixed)
    groups, converted by dgconv_to_static.py, exported by pytorch2onnx.py
    --end2end --verify; onnxruntime gives the trained model's detections."""
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'g_resnext',
        'faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py'))
    cfg.model.backbone.update(groups=4, base_width=4, base_channels=16,
                              init_cfg=None)
    cfg.merge_from_dict(dict(model=NARROW_NECK))
    config = str(tmp_path / 'frcnn.py')
    cfg.dump(config)
    model = _trained_like(build_model(cfg))
    with torch.no_grad():
        for layer in model.backbone.dgconv_layers():
            layer.gate.copy_(torch.randn_like(layer.gate))
    checkpoint = str(tmp_path / 'frcnn.pth')
    torch.save(dict(meta={}, state_dict=model.state_dict()), checkpoint)
    x = torch.randn(1, 3, *SHAPE)
    trained = predict_detections(model, x)

    _tool(monkeypatch, 'model_converters/dgconv_to_static.py', config,
          checkpoint, str(tmp_path / 'static'))
    out = str(tmp_path / 'onnx' / 'frcnn.onnx')
    _tool(monkeypatch, 'deployment/pytorch2onnx.py',
          str(tmp_path / 'static' / 'frcnn_static.py'),
          str(tmp_path / 'static' / 'frcnn_static.pth'), out, '--shape',
          *map(str, SHAPE), '--end2end', '--verify')
    printed = capsys.readouterr().out
    assert 'detections after NMS' in printed
    assert 'onnxruntime matches PyTorch' in printed
    session = onnxruntime.InferenceSession(
        out, providers=['CPUExecutionProvider'])
    _assert_same_detections(session.run(None, {'input': x.numpy()}),
                            trained)
