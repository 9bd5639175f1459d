"""The steps every checkpoint converter shares.

``tools/model_converters/dgconv_to_static.py`` and ``coc_to_static.py`` are
command lines over these: build the config's model and load the trained
checkpoint strictly, record its outputs on a random batch, convert (the
model's ``switch_to_deploy``), check the outputs again before anything is
written, and keep the checkpoint's ``meta`` with a record of the
conversion.
"""
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional

import torch
from mmengine.config import Config

from mmdgconv.apis import load_config
from .checkpoint_io import (ConversionError, build_model,
                            load_state_dict_strict)
from .verify import max_abs_difference, model_outputs, random_inputs

#: The largest absolute output difference a conversion may introduce.
TOLERANCE = 1e-4


@dataclass
class TrainedModel:
    """A trained model, loaded, with its outputs on a random batch.

    Attributes:
        cfg (Config): The config it was built from.
        model (nn.Module): The model, in eval mode.
        checkpoint (dict): The checkpoint as loaded (``meta`` included).
        inputs, samples: The random batch (and data samples).
        outputs (list[Tensor]): The model's outputs on it.
        proposals: A two-stage detector's proposals, reused after the
            conversion so that the RoI heads are compared on the same boxes.
    """

    cfg: Config
    model: torch.nn.Module
    checkpoint: dict
    inputs: object
    samples: object
    outputs: List[torch.Tensor]
    proposals: object = None


def load_trained(config: str, checkpoint: str,
                 cfg_options: Optional[dict] = None,
                 size: int = 64) -> TrainedModel:
    """Build ``config``'s model (its pre-trained ``init_cfg`` dropped: the
    weights come from ``checkpoint``), load ``checkpoint`` strictly and
    record its outputs on a ``size`` x ``size`` random batch."""
    cfg = load_config(config, cfg_options)
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None
    model = build_model(cfg)
    loaded = load_state_dict_strict(model, checkpoint, config)
    model.eval()
    inputs, samples = random_inputs(model, size)
    outputs, proposals = model_outputs(model, inputs, samples)
    return TrainedModel(cfg, model, loaded, inputs, samples, outputs,
                        proposals)


def check_unchanged(trained: TrainedModel, converted: torch.nn.Module,
                    nothing_written: str) -> float:
    """The largest output difference of ``converted`` from the trained
    model on the same batch.

    Raises:
        ConversionError: Above :data:`TOLERANCE`; the message says that
            ``nothing_written`` was not written.
    """
    difference = max_abs_difference(
        trained.outputs,
        model_outputs(converted, trained.inputs, trained.samples,
                      trained.proposals)[0])
    if not difference <= TOLERANCE:
        raise ConversionError(
            f'outputs differ by {difference:.3g} > {TOLERANCE} after the '
            f'conversion; {nothing_written} was not written')
    return difference


def conversion_meta(trained: TrainedModel, tool: str, source: str,
                    **record) -> dict:
    """The checkpoint's ``meta``, kept, with ``mmdgconv_conversion`` naming
    the tool, the source checkpoint and ``record``."""
    meta = dict(trained.checkpoint.get('meta', {}))
    meta['mmdgconv_conversion'] = dict(tool=tool, source=osp.abspath(source),
                                       **record)
    return meta
