# The re-parameterised model: every CoC layer is a plain conv. Loads a
# checkpoint written by tools/model_converters/coc_to_static.py with
# strict=True, e.g.
#   python tools/test.py configs/coc/mask-rcnn_r50-coc_fpn_1x_coco_deploy.py static.pth
_base_ = './mask-rcnn_r50-coc_fpn_1x_coco.py'
model = dict(backbone=dict(deploy=True, init_cfg=None))
