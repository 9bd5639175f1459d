"""tools/slurm_train.sh and tools/slurm_test.sh hand srun the toolboxes'
command line: one task per GPU and mmengine's slurm launcher. There is no
Slurm cluster here, so ``srun`` is a stand-in that records its arguments."""
import os
import os.path as osp
import subprocess

import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


@pytest.fixture
def recorded_srun(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    log = tmp_path / 'srun_args'
    srun = bin_dir / 'srun'
    srun.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > '
                    f'{log}\n')
    srun.chmod(0o755)
    env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}',
               GPUS='16', SRUN_ARGS='--quotatype=auto --exclusive')
    env.pop('GPUS_PER_NODE', None)
    return env, log


@pytest.mark.parametrize('script,tool,fourth', [
    ('slurm_train.sh', 'train.py', '--work-dir=work_dirs/x'),
    ('slurm_test.sh', 'test.py', 'latest.pth'),
])
def test_srun_gets_the_toolbox_command_line(recorded_srun, script, tool,
                                            fourth):
    env, log = recorded_srun
    last = 'work_dirs/x' if tool == 'train.py' else 'latest.pth'
    subprocess.run(
        ['bash', osp.join(REPO, 'tools', script), 'gpu', 'job',
         'configs/coc/retinanet_r50-coc_fpn_1x_coco.py', last,
         '--cfg-options', 'a=1'], env=env, check=True)
    args = log.read_text().splitlines()
    assert args[:9] == [
        '-p', 'gpu', '--job-name=job', '--gres=gpu:8', '--ntasks=16',
        '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1',
        '--quotatype=auto']
    assert args[9] == '--exclusive'
    assert args[11:] == [
        '-u', osp.join(REPO, 'tools', tool),
        'configs/coc/retinanet_r50-coc_fpn_1x_coco.py', fourth,
        '--launcher=slurm', '--cfg-options', 'a=1']


def test_too_few_arguments_print_the_usage(recorded_srun):
    env, log = recorded_srun
    result = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'slurm_train.sh'), 'gpu'], env=env,
        capture_output=True, text=True)
    assert result.returncode == 2
    assert 'usage:' in result.stderr and not log.exists()
