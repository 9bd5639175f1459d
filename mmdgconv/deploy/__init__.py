"""Deployment: the model-level ``switch_to_deploy`` and the shared machinery
of the converter and export tools (``tools/model_converters``,
``tools/deployment``)."""
from .checkpoint_io import (ConversionError, build_model, check_output_path,
                            finish_temp_file, load_state_dict_strict,
                            remove_stale_temp_files, save_atomically,
                            save_pair_atomically, temp_file_for,
                            write_atomically)
from .switch_to_deploy import switch_to_deploy
from .verify import max_abs_difference, model_outputs, random_inputs

__all__ = [
    'ConversionError', 'build_model', 'check_output_path', 'finish_temp_file',
    'load_state_dict_strict', 'max_abs_difference', 'model_outputs',
    'random_inputs', 'remove_stale_temp_files', 'save_atomically',
    'save_pair_atomically', 'switch_to_deploy', 'temp_file_for',
    'write_atomically'
]
