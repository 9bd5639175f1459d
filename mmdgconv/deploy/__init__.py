"""Shared machinery of the converter tools (``tools/model_converters``)."""
from .checkpoint_io import (ConversionError, build_model, check_output_path,
                            load_state_dict_strict, save_atomically)
from .verify import max_abs_difference, model_outputs, random_inputs

__all__ = [
    'ConversionError', 'build_model', 'check_output_path',
    'load_state_dict_strict', 'max_abs_difference', 'model_outputs',
    'random_inputs', 'save_atomically'
]
