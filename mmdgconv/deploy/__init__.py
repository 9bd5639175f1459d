"""Shared machinery of the converter tools (``tools/model_converters``)."""
from .checkpoint_io import (ConversionError, build_model, check_output_path,
                            finish_temp_file, load_state_dict_strict,
                            remove_stale_temp_files, save_atomically,
                            save_pair_atomically, temp_file_for,
                            write_atomically)
from .verify import max_abs_difference, model_outputs, random_inputs

__all__ = [
    'ConversionError', 'build_model', 'check_output_path', 'finish_temp_file',
    'load_state_dict_strict', 'max_abs_difference', 'model_outputs',
    'random_inputs', 'remove_stale_temp_files', 'save_atomically',
    'save_pair_atomically', 'temp_file_for', 'write_atomically'
]
