"""Export a deployed model to ONNX, optionally checked in onnxruntime.

The graph's input, ``input``, is the model's preprocessed batch (normalised
and padded, as its data_preprocessor gives it) of one image (one clip of 3
segments for a recogniser) at ``--shape``; its outputs are the raw network
outputs without post-processing (see mmdgconv/deploy/onnx_export.py), or,
for a detector with ``--end2end``, its detections after NMS: ``dets`` (1, K,
5: x1, y1, x2, y2, score) and ``labels`` (1, K), as mmdeploy writes them
(see mmdgconv/deploy/detection_end2end.py).
DGConv and CoC models are exported from their static checkpoints
(tools/model_converters/dgconv_to_static.py, coc_to_static.py); PED-ResNet
and P4ResNet models export as they are.

Example:
    python tools/deployment/pytorch2onnx.py \\
        static/faster-rcnn_g-resnext50-32x4d_fpn_1x_coco_static.py \\
        static/epoch_12_static.pth g-resnext50.onnx --shape 800 1216 \
        --verify --end2end
"""
import argparse
import os.path as osp


from mmdgconv.apis import load_config
from mmdgconv.deploy import (ConversionError, build_model,
                             check_output_path, load_state_dict_strict)
from mmdgconv.deploy.detection_end2end import (match_detections,
                                               predict_detections)
from mmdgconv.deploy.onnx_export import export_onnx, verify_onnx


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config of the (deployed) model')
    parser.add_argument('checkpoint', help='its checkpoint')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224),
                        metavar=('H', 'W'),
                        help='input height and width (default: 224 224)')
    parser.add_argument('--opset', type=int, default=17,
                        help='ONNX opset (default: 17)')
    parser.add_argument(
        '--verify', action='store_true',
        help='run the file in onnxruntime on a random batch and fail above '
        '1e-4 relative difference to PyTorch')
    parser.add_argument(
        '--end2end', action='store_true',
        help='for a detector: export the post-processing too (RPN '
        'proposals, RoI heads, NMS), with outputs dets and labels; '
        '--verify then compares them with the detector\'s own predict()')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        check_output_path(args.out, args.checkpoint, args.config)
        if not osp.isfile(args.checkpoint):
            raise ConversionError(f'checkpoint {args.checkpoint} does not '
                                  'exist')
        cfg = load_config(args.config)
        model = build_model(cfg)
        load_state_dict_strict(model, args.checkpoint, args.config)
        graph, inputs = export_onnx(model, args.out, args.shape, args.opset,
                                    end2end=args.end2end)
        kind = 'detections after NMS' if args.end2end else graph.kind
        print(f'wrote {args.out} (input {tuple(inputs.shape)}, {kind})')
        if args.verify and args.end2end:
            # the reference is mmdet's own predict()
            import onnxruntime
            session = onnxruntime.InferenceSession(
                args.out, providers=['CPUExecutionProvider'])
            difference = match_detections(
                session.run(None, {'input': inputs.numpy()}),
                predict_detections(model, inputs))
        elif args.verify:
            difference = verify_onnx(args.out, graph, inputs)
        if args.verify:
            print(f'onnxruntime matches PyTorch: max relative difference '
                  f'{difference:.2e}')
    except (ConversionError, FileNotFoundError, ValueError) as error:
        raise SystemExit(f'error: {error}')


if __name__ == '__main__':
    main()
