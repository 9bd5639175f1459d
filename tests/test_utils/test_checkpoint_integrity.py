"""Corrupted, foreign and unsafe files are told apart from checkpoints, and
the outputs of mmdgconv's writers are complete, named and plainly moded."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mmdgconv.deploy import (ConversionError, check_output_path,
                             save_atomically, save_pair_atomically)
from mmdgconv.utils import CheckpointSafetyError, load_checkpoint_safely
from mmdgconv.utils.checkpoint_integrity import (checkpoint_digest,
                                                 foreign_format,
                                                 record_digest)


def _checkpoint():
    return dict(
        meta=dict(iter=10, seed=3),
        state_dict={'conv.weight': torch.arange(4096, dtype=torch.float32)},
        optimizer=dict(state={0: dict(exp_avg=torch.ones(4096))}))


def _flip(path, needle: bytes, count: int = 64) -> None:
    """Invert ``count`` bytes in the middle of ``needle``'s stored copy."""
    data = bytearray(open(path, 'rb').read())
    start = data.find(needle)
    assert start > 0, 'torch stores tensor data uncompressed'
    middle = start + len(needle) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    open(path, 'wb').write(bytes(data))


def test_flipped_tensor_bytes_are_caught_by_the_recorded_digest(tmp_path):
    path = str(tmp_path / 'iter_10.pth')
    checkpoint = record_digest(_checkpoint())
    torch.save(checkpoint, path)
    assert torch.equal(load_checkpoint_safely(path)['state_dict']
                       ['conv.weight'], torch.arange(4096.))
    _flip(path, _checkpoint()['optimizer']['state'][0]['exp_avg'].numpy()
          .tobytes())
    with pytest.raises(CheckpointSafetyError) as error:
        load_checkpoint_safely(path)
    assert path in str(error.value) and 'SHA-256' in str(error.value)

    # Without a digest the same damage loads silently: torch checks nothing.
    plain = str(tmp_path / 'plain.pth')
    torch.save(_checkpoint(), plain)
    _flip(plain, torch.arange(4096.).numpy().tobytes())
    damaged = load_checkpoint_safely(plain)['state_dict']['conv.weight']
    assert not torch.equal(damaged, torch.arange(4096.))


def test_digest_covers_every_value_and_survives_a_round_trip(tmp_path):
    reference = checkpoint_digest(_checkpoint())
    assert reference == checkpoint_digest(_checkpoint())  # deterministic
    changed = []
    for edit in (
            lambda c: c['state_dict']['conv.weight'].__setitem__(7, 7.5),
            lambda c: c['optimizer']['state'][0].__setitem__(
                'exp_avg', torch.ones(4096, dtype=torch.float64)),
            lambda c: c['meta'].__setitem__('iter', 11),
            lambda c: c['meta'].__setitem__('seed', '3'),
            lambda c: c.__setitem__('rng', np.arange(3, dtype=np.uint32)),
    ):
        checkpoint = _checkpoint()
        edit(checkpoint)
        changed.append(checkpoint_digest(checkpoint) != reference)
    assert all(changed)
    # It leaves itself out, and a saved and loaded copy has the same one.
    recorded = record_digest(_checkpoint())
    assert recorded['meta']['sha256'] == reference
    path = str(tmp_path / 'c.pth')
    torch.save(recorded, path)
    assert checkpoint_digest(load_checkpoint_safely(path)) == reference


def test_an_image_is_not_called_an_unsafe_checkpoint(tmp_path):
    png = str(tmp_path / 'photo.png')
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png)
    assert foreign_format(png) == 'a PNG image'
    with pytest.raises(CheckpointSafetyError) as error:
        load_checkpoint_safely(png)
    message = str(error.value)
    assert message == f'{png} is not a PyTorch checkpoint: it is a PNG image.'
    text = str(tmp_path / 'notes.pth')
    open(text, 'w').write('not a checkpoint\n')
    assert foreign_format(text) == 'a text file'
    empty = str(tmp_path / 'empty.pth')
    open(empty, 'wb').close()
    assert foreign_format(empty) == 'an empty file'


def test_rejected_pickles_never_relay_the_unsafe_advice(tmp_path):
    garbage = str(tmp_path / 'garbage.pth')
    open(garbage, 'wb').write(b'\x80\x02' + bytes(range(40, 200)))
    with pytest.raises(CheckpointSafetyError) as error:
        load_checkpoint_safely(garbage)
    assert garbage in str(error.value)
    assert 'weights_only' not in str(error.value)

    class Payload:

        def __reduce__(self):
            return (os.system, ('echo unsafe',))

    unsafe = str(tmp_path / 'unsafe.pth')
    torch.save({'x': Payload()}, unsafe)
    with pytest.raises(CheckpointSafetyError) as error:
        load_checkpoint_safely(unsafe)
    assert 'posix.system' in str(error.value)
    assert 'weights_only' not in str(error.value)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    return process.pid


def test_output_checks_create_directories_probe_and_clean_up(tmp_path):
    out = tmp_path / 'static' / 'deeper' / 'model.pth'
    check_output_path(str(out))  # README writes into a new static/ folder
    assert out.parent.is_dir() and list(out.parent.iterdir()) == []

    stale = out.parent / f'.model.pth.mmdgconv-tmp.{_dead_pid()}.x1.pth'
    live = out.parent / f'.model.pth.mmdgconv-tmp.{os.getpid()}.x2.pth'
    other = out.parent / '.model.pth.backup'
    for path in (stale, live, other):
        path.write_bytes(b'partial')
    check_output_path(str(out))
    assert not stale.exists() and live.exists() and other.exists()

    for unwritable in ('/proc/model.pth', '/sys/model.pth'):
        with pytest.raises(ConversionError, match='cannot write ' +
                           unwritable):
            check_output_path(unwritable)
    with pytest.raises(ConversionError, match='is a directory'):
        check_output_path(str(tmp_path))
    source = tmp_path / 'in.pth'
    source.write_bytes(b'x')
    with pytest.raises(ConversionError, match='refusing to overwrite'):
        check_output_path(str(source), str(source))


def test_saved_checkpoints_have_the_umask_mode_and_a_digest(tmp_path):
    out = str(tmp_path / 'out.pth')
    previous = os.umask(0o027)
    try:
        save_atomically(_checkpoint(), out)
    finally:
        os.umask(previous)
    assert os.stat(out).st_mode & 0o777 == 0o640
    assert load_checkpoint_safely(out)['meta']['sha256'] == \
        checkpoint_digest(_checkpoint())
    assert sorted(os.listdir(tmp_path)) == ['out.pth']


def test_a_pair_is_written_whole_or_not_at_all(tmp_path):
    first, second = str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth')
    with pytest.raises(Exception):
        # The second cannot be pickled: the first must not appear either.
        save_pair_atomically((_checkpoint(), first),
                             (dict(meta={}, fn=lambda: None), second))
    assert os.listdir(tmp_path) == []
    save_pair_atomically((_checkpoint(), first), (_checkpoint(), second))
    assert sorted(os.listdir(tmp_path)) == ['a.pth', 'b.pth']
