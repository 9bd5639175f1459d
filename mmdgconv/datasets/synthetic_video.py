"""A generated, deterministic Kinetics-format video dataset.

Real MP4 files written with OpenCV (``mp4v``) and ``kinetics400``-style
annotation lists (``<relative path> <label>`` per line), laid out as
mmaction2 expects, so the stock TSN pipeline (``DecordInit``,
``SampleFrames``, ``DecordDecode``) decodes them. Each class is a square
moving in its own direction in its own colour on a textured background,
so classes differ by visible motion and colour and a TSN learns them on a
CPU in minutes.
"""
import os
import os.path as osp
from typing import Dict

import cv2
import numpy as np

from .dataset_spec import is_complete, mark_complete

#: (name, BGR colour, per-frame motion (dx, dy)) of every class.
SYNTHETIC_VIDEO_CLASSES = (
    ('red_right', (40, 40, 220), (1, 0)),
    ('green_left', (40, 200, 40), (-1, 0)),
    ('blue_down', (220, 80, 40), (0, 1)),
    ('yellow_up', (40, 210, 230), (0, -1)),
)


def _write_video(path: str, rng: np.random.Generator, colour, motion,
                 num_frames: int, size: int, fps: int) -> None:
    low = rng.integers(60, 160, size=(4, 4, 3)).astype(np.uint8)
    background = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    side = size // 4
    speed = max(1.0, (size - side - 4) / max(num_frames - 1, 1))
    dx, dy = motion
    # Start where the whole path stays inside the frame.
    x = 2 if dx > 0 else size - side - 2 if dx < 0 else float(
        rng.uniform(2, size - side - 2))
    y = 2 if dy > 0 else size - side - 2 if dy < 0 else float(
        rng.uniform(2, size - side - 2))
    jitter = rng.integers(-20, 21, size=3)
    colour = tuple(int(c) for c in np.clip(np.array(colour) + jitter, 0, 255))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps,
                             (size, size))
    if not writer.isOpened():
        raise RuntimeError(f'OpenCV cannot write MP4 (mp4v) to {path}')
    try:
        for t in range(num_frames):
            frame = background.copy()
            x0 = int(round(x + dx * speed * t))
            y0 = int(round(y + dy * speed * t))
            cv2.rectangle(frame, (x0, y0), (x0 + side, y0 + side), colour, -1)
            writer.write(frame)
    finally:
        writer.release()


def make_synthetic_kinetics(root: str,
                            videos_per_class: int = 8,
                            val_per_class: int = 2,
                            num_frames: int = 16,
                            size: int = 64,
                            fps: int = 8,
                            seed: int = 0) -> Dict[str, str]:
    """Write the dataset under ``root`` in mmaction2's Kinetics layout.

    ``root/videos_{train,val}/<class>_<n>.mp4`` and
    ``root/kinetics400_{train,val}_list_videos.txt``. The same arguments
    always produce the same videos; a complete dataset written with the same
    arguments is reused.

    Args:
        root (str): Output directory.
        videos_per_class (int): Training videos per class. Default: 8.
        val_per_class (int): Validation videos per class. Default: 2.
        num_frames (int): Frames per video. Default: 16.
        size (int): Frame height and width. Default: 64.
        fps (int): Frame rate. Default: 8.
        seed (int): Random seed. Default: 0.

    Returns:
        dict: ``data_root``, ``train_videos``, ``val_videos``, ``train_ann``,
        ``val_ann`` and ``num_classes``.
    """
    if videos_per_class < 1 or val_per_class < 1 or num_frames < 2:
        raise ValueError('videos_per_class and val_per_class must be >= 1 and '
                         f'num_frames >= 2, got {videos_per_class}, '
                         f'{val_per_class}, {num_frames}')
    result = dict(
        data_root=root,
        train_videos=osp.join(root, 'videos_train'),
        val_videos=osp.join(root, 'videos_val'),
        train_ann=osp.join(root, 'kinetics400_train_list_videos.txt'),
        val_ann=osp.join(root, 'kinetics400_val_list_videos.txt'),
        num_classes=len(SYNTHETIC_VIDEO_CLASSES))
    spec = dict(videos_per_class=videos_per_class,
                val_per_class=val_per_class, num_frames=num_frames, size=size,
                fps=fps, seed=seed)
    if is_complete(root, spec):
        return result
    rng = np.random.default_rng(seed)
    for split, count in (('train', videos_per_class), ('val', val_per_class)):
        directory = result[f'{split}_videos']
        os.makedirs(directory, exist_ok=True)
        lines = []
        for label, (name, colour, motion) in enumerate(
                SYNTHETIC_VIDEO_CLASSES):
            for index in range(count):
                file_name = f'{name}_{index:03d}.mp4'
                _write_video(osp.join(directory, file_name), rng, colour,
                             motion, num_frames, size, fps)
                lines.append(f'{file_name} {label}')
        with open(result[f'{split}_ann'], 'w') as f:
            f.write('\n'.join(lines) + '\n')
    mark_complete(root, spec)
    return result
