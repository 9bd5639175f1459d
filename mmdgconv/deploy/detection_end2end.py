"""A detector's whole inference as one traceable module, post-processing
included, so the exported ONNX graph gives detections directly.

Outputs follow mmdeploy's convention for detectors: ``dets`` (N, K, 5: x1,
y1, x2, y2, score), sorted by score, and ``labels`` (N, K). K is the number
of detections that survive, at most the config's ``max_per_img``.

Each step computes what mmdet's own ``predict`` computes, in the same
order, with operators that have standard ONNX forms:

- two-stage detectors (Faster / Mask R-CNN with a ``StandardRoIHead``): the
  RPN's per-level top ``nms_pre`` scores, box decoding, the small-box filter
  and per-level NMS (``RPNHead._predict_by_feat_single``); multi-level RoI
  Align (``SingleRoIExtractor``); the box head and ``multiclass_nms``. Mask
  R-CNN gives its boxes; its masks are not part of these outputs.
- single-stage anchor heads (RetinaNet): the per-level score filter and top
  ``nms_pre`` (``filter_scores_and_topk``), decoding and class-wise NMS.

NMS is ``torchvision.ops.nms`` (ONNX ``NonMaxSuppression``) on mmcv's
``batched_nms`` offset boxes, and RoI Align is ``torchvision.ops.roi_align``
(ONNX ``RoiAlign``, half-pixel for ``aligned=True``); both compute what
mmcv's kernels compute. Anchors depend only on the input size, so they are
computed once for the export shape and enter the graph as constants: the
graph is exported, and valid, for that one input size. Boxes are clipped to
the input (the padded batch), as mmdeploy does.
"""
import inspect
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from .checkpoint_io import ConversionError

# NMS settings mmcv's batched_nms reads besides the IoU threshold; anything
# else (soft-NMS, offsets, score thresholds inside NMS) is refused.
_NMS_KEYS = {'type', 'iou_threshold', 'class_agnostic', 'split_thr'}


def _nms_threshold(nms_cfg, where: str) -> Tuple[float, bool]:
    unknown = set(nms_cfg) - _NMS_KEYS
    if nms_cfg.get('type', 'nms') != 'nms' or unknown:
        raise ConversionError(
            f'{where}: only plain NMS (type="nms", iou_threshold, '
            f'class_agnostic) exports end to end, got {dict(nms_cfg)}')
    return float(nms_cfg['iou_threshold']), bool(
        nms_cfg.get('class_agnostic', False))


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor,
                iou_threshold: float,
                class_agnostic: bool = False) -> Tensor:
    """Indices kept by NMS within each ``idxs`` category, by decreasing
    score, as mmcv's ``batched_nms``: categories are kept apart by offsetting
    each one's boxes beyond the largest coordinate."""
    from torchvision.ops import nms
    if class_agnostic:
        return nms(boxes, scores, iou_threshold)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def _delta_decoder(coder, where: str):
    """Check the coder is mmdet's ``DeltaXYWHBBoxCoder`` without options
    the export leaves out; return its settings."""
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
    if type(coder) is not DeltaXYWHBBoxCoder or coder.add_ctr_clamp:
        raise ConversionError(
            f'{where}: end-to-end export decodes boxes as mmdet\'s '
            f'DeltaXYWHBBoxCoder (without add_ctr_clamp), got '
            f'{type(coder).__name__}')
    return coder


def decode_deltas(coder, priors: Tensor, deltas: Tensor,
                  img_shape: Sequence[int]) -> Tensor:
    """mmdet's ``delta2bbox`` for (M, 4) priors and deltas, with the border
    clip written without in-place slices (which ONNX tracing mishandles)."""
    means = deltas.new_tensor(coder.means).view(1, -1)
    stds = deltas.new_tensor(coder.stds).view(1, -1)
    denorm = deltas * stds + means
    centres = (priors[:, :2] + priors[:, 2:]) * 0.5
    sizes = priors[:, 2:] - priors[:, :2]
    # the wh_ratio_clip every mmdet caller leaves at decode()'s default
    wh_ratio_clip = inspect.signature(
        coder.decode).parameters['wh_ratio_clip'].default
    max_ratio = float(np.abs(np.log(wh_ratio_clip)))
    log_scale = denorm[:, 2:].clamp(min=-max_ratio, max=max_ratio)
    centres = centres + sizes * denorm[:, :2]
    sizes = sizes * log_scale.exp()
    top_left = centres - sizes * 0.5
    bottom_right = centres + sizes * 0.5
    if coder.clip_border:
        height, width = img_shape
        top_left = torch.stack((top_left[:, 0].clamp(0, width),
                                top_left[:, 1].clamp(0, height)), 1)
        bottom_right = torch.stack((bottom_right[:, 0].clamp(0, width),
                                    bottom_right[:, 1].clamp(0, height)), 1)
    return torch.cat((top_left, bottom_right), 1)


def _level_outputs(score: Tensor, delta: Tensor,
                   channels: int) -> Tuple[Tensor, Tensor]:
    """One image's (C·A, H, W) head maps as (H·W·A, C) and (H·W·A, 4)."""
    score = score.permute(1, 2, 0).reshape(-1, channels)
    return score, delta.permute(1, 2, 0).reshape(-1, 4)


class _End2EndBase(nn.Module):
    """The shared part: the backbone and neck, and the anchors of the
    export size."""

    def __init__(self, model: nn.Module, head: nn.Module,
                 shape: Sequence[int]):
        super().__init__()
        self.model = model
        self.img_shape = tuple(int(s) for s in shape)
        height, width = self.img_shape
        with torch.no_grad():
            probe = next(model.parameters()).new_zeros(1, 3, height, width)
            features = model.extract_feat(probe)
        sizes = [f.shape[-2:] for f in features]
        priors = head.prior_generator.grid_priors(
            sizes, device=probe.device, dtype=probe.dtype)
        self.priors = [p.tensor if hasattr(p, 'tensor') else p
                       for p in priors]

    def _check_input(self, input: Tensor) -> None:
        if tuple(input.shape[-2:]) != self.img_shape or input.shape[0] != 1:
            raise ConversionError(
                f'the end-to-end graph is built for one image of '
                f'{self.img_shape}, got a batch of shape {tuple(input.shape)}')


class TwoStageEnd2End(_End2EndBase):
    """Faster / Mask R-CNN inference to ``dets`` and ``labels``."""

    def __init__(self, model: nn.Module, shape: Sequence[int]):
        from mmdet.models.roi_heads import StandardRoIHead
        from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
        roi_head = model.roi_head
        if type(roi_head) is not StandardRoIHead or roi_head.with_shared_head:
            raise ConversionError(
                f'end-to-end export covers StandardRoIHead (Faster / Mask '
                f'R-CNN), not {type(roi_head).__name__}')
        extractor = roi_head.bbox_roi_extractor
        if type(extractor) is not SingleRoIExtractor:
            raise ConversionError(
                'end-to-end export covers SingleRoIExtractor, not '
                f'{type(extractor).__name__}')
        for layer in extractor.roi_layers:
            if getattr(layer, 'pool_mode', 'avg') != 'avg':
                raise ConversionError(
                    'end-to-end export covers average RoI Align, not '
                    f'{layer}')
        super().__init__(model, model.rpn_head, shape)
        rpn_cfg = model.test_cfg.rpn
        rcnn_cfg = model.test_cfg.rcnn
        _delta_decoder(model.rpn_head.bbox_coder, 'rpn_head')
        _delta_decoder(roi_head.bbox_head.bbox_coder, 'roi_head.bbox_head')
        self.rpn_iou, _ = _nms_threshold(rpn_cfg.nms, 'test_cfg.rpn.nms')
        self.rcnn_iou, self.rcnn_agnostic = _nms_threshold(
            rcnn_cfg.nms, 'test_cfg.rcnn.nms')
        if not model.rpn_head.use_sigmoid_cls:
            raise ConversionError('end-to-end export covers an RPN with '
                                  'sigmoid objectness')
        if roi_head.bbox_head.custom_cls_channels:
            raise ConversionError('end-to-end export covers a softmax box '
                                  'head')

    def _proposals(self, features: List[Tensor]) -> Tensor:
        """``RPNHead._predict_by_feat_single`` and ``_bbox_post_process``
        for one image (at the input's scale)."""
        rpn_head = self.model.rpn_head
        cfg = self.model.test_cfg.rpn
        nms_pre = cfg.get('nms_pre', -1)
        scores, deltas, priors, levels = [], [], [], []
        cls_scores, bbox_preds = rpn_head(features)
        for level, (score, delta, prior) in enumerate(
                zip(cls_scores, bbox_preds, self.priors)):
            score, delta = _level_outputs(score[0], delta[0],
                                          rpn_head.cls_out_channels)
            score = score.sigmoid().reshape(-1)
            if 0 < nms_pre < score.shape[0]:
                score, order = score.sort(descending=True)
                score, order = score[:nms_pre], order[:nms_pre]
                delta, prior = delta[order], prior[order]
            scores.append(score)
            deltas.append(delta)
            priors.append(prior)
            levels.append(torch.full_like(score, level, dtype=torch.long))
        boxes = decode_deltas(rpn_head.bbox_coder, torch.cat(priors),
                              torch.cat(deltas), self.img_shape)
        scores, levels = torch.cat(scores), torch.cat(levels)
        if cfg.get('min_bbox_size', -1) >= 0:
            sizes = boxes[:, 2:] - boxes[:, :2]
            keep = ((sizes[:, 0] > cfg.min_bbox_size) &
                    (sizes[:, 1] > cfg.min_bbox_size)).nonzero()[:, 0]
            boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(boxes, scores, levels, self.rpn_iou)
        return boxes[keep[:cfg.max_per_img]]

    def _roi_features(self, features: List[Tensor], rois: Tensor) -> Tensor:
        """``SingleRoIExtractor``: each RoI pooled from the level its scale
        maps to. Every level pools every RoI and the level's own are
        selected, which keeps the graph free of data-dependent branches."""
        from torchvision.ops import roi_align
        extractor = self.model.roi_head.bbox_roi_extractor
        levels = extractor.map_roi_levels(rois, extractor.num_inputs)
        pooled = None
        for index, layer in enumerate(extractor.roi_layers):
            level_pooled = roi_align(
                features[index], rois, layer.output_size,
                spatial_scale=layer.spatial_scale,
                sampling_ratio=layer.sampling_ratio, aligned=layer.aligned)
            mine = (levels == index).view(-1, 1, 1, 1)
            pooled = level_pooled if pooled is None else torch.where(
                mine, level_pooled, pooled)
        return pooled

    def forward(self, input: Tensor) -> Tuple[Tensor, Tensor]:
        self._check_input(input)
        model = self.model
        roi_head = model.roi_head
        features = list(model.extract_feat(input))
        proposals = self._proposals(features)
        # (sizes come from tensors, never len(), so the traced graph keeps
        # them dynamic)
        rois = torch.cat((torch.zeros_like(proposals[:, :1]), proposals), 1)
        extractor = roi_head.bbox_roi_extractor
        cls_score, bbox_pred = roi_head.bbox_head(
            self._roi_features(features[:extractor.num_inputs], rois))
        bbox_head = roi_head.bbox_head
        scores = cls_score.softmax(-1)[:, :-1]
        classes = scores.shape[1]
        per_class = 1 if bbox_head.reg_class_agnostic else classes
        boxes = decode_deltas(
            bbox_head.bbox_coder,
            proposals.repeat_interleave(per_class, dim=0),
            bbox_pred.reshape(-1, 4), self.img_shape)
        boxes = boxes.reshape(-1, per_class, 4).expand(-1, classes, 4)
        labels = torch.arange(classes, device=scores.device).expand_as(scores)
        return self._multiclass_nms(boxes.reshape(-1, 4), scores.reshape(-1),
                                    labels.reshape(-1))

    def _multiclass_nms(self, boxes: Tensor, scores: Tensor,
                        labels: Tensor) -> Tuple[Tensor, Tensor]:
        """mmdet's ``multiclass_nms`` on (rois·classes) flattened boxes."""
        cfg = self.model.test_cfg.rcnn
        keep = (scores > cfg.score_thr).nonzero()[:, 0]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, self.rcnn_iou,
                           self.rcnn_agnostic)
        if cfg.max_per_img > 0:
            keep = keep[:cfg.max_per_img]
        dets = torch.cat((boxes[keep], scores[keep, None]), 1)
        return dets[None], labels[keep][None]


class SingleStageEnd2End(_End2EndBase):
    """Anchor-based single-stage detectors (RetinaNet) to ``dets`` and
    ``labels``."""

    def __init__(self, model: nn.Module, shape: Sequence[int]):
        from mmdet.models.dense_heads import AnchorHead, RetinaHead
        head = model.bbox_head
        if type(head) not in (AnchorHead, RetinaHead) or \
                not head.use_sigmoid_cls:
            raise ConversionError(
                'end-to-end export covers anchor heads with sigmoid scores '
                f'(RetinaNet), not {type(head).__name__}')
        _delta_decoder(head.bbox_coder, 'bbox_head')
        super().__init__(model, head, shape)
        self.iou, self.agnostic = _nms_threshold(model.test_cfg.nms,
                                                 'test_cfg.nms')

    def forward(self, input: Tensor) -> Tuple[Tensor, Tensor]:
        self._check_input(input)
        model = self.model
        head = model.bbox_head
        cfg = model.test_cfg
        nms_pre = cfg.get('nms_pre', -1)
        classes = head.cls_out_channels
        cls_scores, bbox_preds = head(model.extract_feat(input))
        all_scores, all_labels, all_boxes = [], [], []
        for score, delta, prior in zip(cls_scores, bbox_preds, self.priors):
            score, delta = _level_outputs(score[0], delta[0], classes)
            # filter_scores_and_topk: the top nms_pre of the scores above
            # the threshold are the top nms_pre overall, then thresholded.
            score, order = score.sigmoid().reshape(-1).sort(descending=True)
            if 0 < nms_pre < score.shape[0]:
                score, order = score[:nms_pre], order[:nms_pre]
            keep = (score > cfg.score_thr).nonzero()[:, 0]
            score, order = score[keep], order[keep]
            anchor = order // classes
            all_scores.append(score)
            all_labels.append(order % classes)
            all_boxes.append(decode_deltas(head.bbox_coder, prior[anchor],
                                           delta[anchor], self.img_shape))
        boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
        labels = torch.cat(all_labels)
        if cfg.get('min_bbox_size', -1) >= 0:
            sizes = boxes[:, 2:] - boxes[:, :2]
            keep = ((sizes[:, 0] > cfg.min_bbox_size) &
                    (sizes[:, 1] > cfg.min_bbox_size)).nonzero()[:, 0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, self.iou, self.agnostic)
        keep = keep[:cfg.max_per_img]
        dets = torch.cat((boxes[keep], scores[keep, None]), 1)
        return dets[None], labels[keep][None]


def end2end_graph(model: nn.Module, shape: Sequence[int]) -> nn.Module:
    """The detector's inference with post-processing, for ``shape`` (H, W).

    Raises:
        ConversionError: Not an mmdet detector this export covers.
    """
    if not type(model).__module__.startswith('mmdet'):
        raise ConversionError(
            f'--end2end is for mmdet detectors, not {type(model).__name__}')
    if hasattr(model, 'rpn_head') and hasattr(model, 'roi_head'):
        return TwoStageEnd2End(model, shape).eval()
    return SingleStageEnd2End(model, shape).eval()


def predict_detections(model: nn.Module,
                       inputs: Tensor) -> Tuple[Tensor, Tensor]:
    """What mmdet's own ``predict`` gives for a preprocessed batch of one
    (boxes at the input's scale), as ``dets`` (1, K, 5) and ``labels``
    (1, K): the reference an exported graph is checked against."""
    from mmdet.structures import DetDataSample
    height, width = inputs.shape[-2:]
    sample = DetDataSample(metainfo=dict(
        img_shape=(height, width), ori_shape=(height, width),
        pad_shape=(height, width), batch_input_shape=(height, width),
        scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        result = model.predict(inputs, [sample], rescale=False)[0]
    instances = result.pred_instances
    dets = torch.cat((instances.bboxes, instances.scores[:, None]), 1)
    return dets[None], instances.labels[None]


def match_detections(actual: Tuple, expected: Tuple,
                     rtol: float = 1e-4) -> float:
    """Check that two sets of detections of one image agree: the same
    number, and each detection of ``expected`` paired one to one with one
    of ``actual`` of the same label whose box and score are within ``rtol``
    (relative to the largest coordinate). Pairing by value rather than
    position: detections whose scores differ in the last bits may come in
    either order.

    Args:
        actual, expected (tuple): ``dets`` (1, K, 5) and ``labels`` (1, K),
            as arrays or tensors.

    Returns:
        float: The largest relative difference of a paired detection.

    Raises:
        ConversionError: A different number of detections, or one without a
            partner.
    """
    dets, labels = (torch.as_tensor(t)[0] for t in actual)
    ref_dets, ref_labels = (torch.as_tensor(t)[0] for t in expected)
    if len(dets) != len(ref_dets):
        raise ConversionError(f'{len(dets)} detections, expected '
                              f'{len(ref_dets)}')
    if len(dets) == 0:
        return 0.0
    scale = max(float(ref_dets[:, :4].abs().max()), 1.0)
    free = torch.ones(len(dets), dtype=torch.bool)
    worst = 0.0
    for det, label in zip(ref_dets, ref_labels):
        error = torch.maximum(
            (dets[:, :4] - det[:4]).abs().amax(1) / scale,
            (dets[:, 4] - det[4]).abs())
        error[~free | (labels != label)] = float('inf')
        best = int(error.argmin())
        if float(error[best]) > rtol:
            raise ConversionError(
                f'no detection matches {det.tolist()} (label {int(label)}) '
                f'within {rtol:.0e}')
        free[best] = False
        worst = max(worst, float(error[best]))
    return worst
