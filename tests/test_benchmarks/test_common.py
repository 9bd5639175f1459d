"""The benchmark scripts' shared machinery: paired ratios, rows measured
without the baseline, the device option, and the bf16 and compiled train
steps (their values, never their wall-clock time)."""
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))
import common  # noqa: E402


def test_ratios_are_paired_round_by_round():
    # the machine slows down in round 2: the paired ratio stays 2.0, the
    # ratio of the medians would not
    times = {'step': {'base': [1.0, 4.0, 1.1], 'ours': [2.0, 8.0, 2.2]}}
    table = common.format_table(times, None, ['base', 'ours'], 'header')
    row = table.splitlines()[-1]
    assert row == '| step | 1100 ms (1.00x) | 2200 ms (2.00x) |'


def test_row_without_the_baseline_names_its_own():
    times = {
        'step': {'base': [1.0], 'stock': [0.5], 'ours': [1.5]},
        'detector': {'stock': [2.0], 'ours': [3.0]},
    }
    table = common.format_table(times, None, ['base', 'stock', 'ours'], 'h')
    assert table.splitlines()[-1] == (
        '| detector (ratios to stock) | n/a | 2000 ms (1.00x) | '
        '3000 ms (1.50x) |')


def test_cuda_without_cuda_is_one_clear_error(monkeypatch):
    args = common.benchmark_parser('x', 3).parse_args(['--device', 'cuda'])
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit, match='--device cuda'):
        common.setup(args)
    args = common.benchmark_parser('x', 3).parse_args([])
    common.setup(args)
    assert args.device == torch.device('cpu')


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 1000))


def test_bf16_train_step_runs_the_forward_in_bf16():
    model = _tiny()
    dtypes = []
    model[0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    batch, target = torch.rand(2, 3, 8, 8), torch.tensor([1, 2])
    before = model[0].weight.detach().clone()
    common.train_step(model, common.sgd(model.parameters()), batch, target,
                      torch.bfloat16)
    assert dtypes == [torch.bfloat16]
    assert model[0].weight.dtype == torch.float32  # master weights
    assert not torch.equal(model[0].weight, before)  # the step was taken
    common.train_step(model, common.sgd(model.parameters()), batch, target)
    assert dtypes[-1] == torch.float32


def test_task_tables_hold_every_row():
    models = {'a': _tiny(), 'b': _tiny()}
    tasks = common.standard_tasks(models, 8, train=['b'], bf16=True)
    assert set(tasks) == {'train step, batch 8', common.BF16_TRAIN,
                          'inference, batch 1', 'inference, batch 8'}
    assert set(tasks[common.BF16_TRAIN]) == {'b'}
    times = common.measure(tasks, 2)
    assert all(len(t) == 2 for row in times.values() for t in row.values())


def test_cheap_rows_get_rounds_until_the_time_floor():
    """Every row runs ``repeats`` rounds; one whose rounds are quicker than
    ``min_seconds`` gets more, all its models alike."""
    import time
    slow = {'a': lambda: time.sleep(0.03), 'b': lambda: time.sleep(0.03)}
    cheap = {'a': lambda: None, 'b': lambda: time.sleep(0.001)}
    times = common.measure({'slow': slow, 'cheap': cheap}, 2,
                           min_seconds=0.05)
    assert [len(t) for t in times['slow'].values()] == [2, 2]
    counts = [len(t) for t in times['cheap'].values()]
    assert counts[0] == counts[1] > 2
    assert sum(times['cheap']['b']) >= 0.001 * counts[1]
    assert common.rounds_description(times) == f'2 to {counts[0]}'
    assert common.rounds_description({'slow': times['slow']}) == '2'
    # without a floor, exactly ``repeats``
    times = common.measure({'cheap': cheap}, 3)
    assert [len(t) for t in times['cheap'].values()] == [3, 3]


def test_onnxruntime_rows_run_the_exported_models(tmp_path, monkeypatch):
    """Each row's callable runs the model's graph in onnxruntime: its outputs
    are PyTorch's; the scratch folder is gone afterwards."""
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    models = {'a': _tiny().eval(), 'b': _tiny().eval()}
    with torch.no_grad():
        models['b'][0].weight.mul_(-2)  # the rows must not mix them up
    tasks = common.onnxruntime_tasks(models, 8, threads=1)
    assert set(tasks) == {'inference, batch 1, onnxruntime',
                          'inference, batch 8, onnxruntime'}
    for row in tasks.values():
        assert set(row) == {'a', 'b'}
        (out_a, ), (out_b, ) = row['a'](), row['b']()
        feed = torch.from_numpy(
            row['a'].__defaults__[1]['input'])  # the batch it runs
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(out_a),
                                       models['a'](feed), rtol=1e-4,
                                       atol=1e-5)
            torch.testing.assert_close(torch.from_numpy(out_b),
                                       models['b'](feed), rtol=1e-4,
                                       atol=1e-5)
    assert list(tmp_path.iterdir()) == []
