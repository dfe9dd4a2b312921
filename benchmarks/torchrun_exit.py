"""How often does a torchrun-launched gloo process die at exit, with and without `exit_now`?

A finished rank that has left its process group can still be aborted in Python's teardown by gloo's threads (SIGABRT,
"terminate called without an active exception"), after its results are written; torchrun then reports the run as
failed. This script runs N pairs of `torchrun --nproc_per_node 2` on itself, alternating: a few DDP steps of a tiny
model, then a normal exit, or `mylib.distributed.exit_now()` (what `python -m mylib.train_imagenette` does under
torchrun). Output: benchmarks/torchrun_exit.txt.

    python benchmarks/torchrun_exit.py [N]
"""
import os, subprocess, sys
from pathlib import Path

def payload(use_exit_now):
    import torch
    from torch import nn
    from mylib.distributed import init_dist, cleanup_dist, exit_now
    torch.set_num_threads(1)
    init_dist('gloo')
    model = nn.parallel.DistributedDataParallel(nn.Linear(10, 2))
    opt = torch.optim.SGD(model.parameters(), 0.1)
    for _ in range(3):
        model(torch.randn(8, 10)).sum().backward(); opt.step(); opt.zero_grad()
    cleanup_dist()
    if use_exit_now: exit_now()

def main(n):
    torchrun = str(Path(sys.executable).parent/'torchrun')
    failed = {False: 0, True: 0}
    for i in range(n):
        for use in (False, True):
            cmd = [torchrun, '--nproc_per_node', '2', '--master_port', str(29500 + (2 * i + use) % 400), __file__]
            res = subprocess.run(cmd + (['--exit-now'] if use else []), capture_output=True, text=True, timeout=300)
            if res.returncode != 0:
                failed[use] += 1
                why = next((l for l in res.stderr.splitlines() if 'terminate' in l or 'Signal' in l), res.stderr[-200:])
                print(f'pair {i}, {"with" if use else "without"} exit_now: exit status {res.returncode}: {why.strip()}', flush=True)
    print(f'without exit_now: {failed[False]} of {n} runs failed; with exit_now: {failed[True]} of {n}')

if __name__ == '__main__':
    if 'RANK' in os.environ: payload('--exit-now' in sys.argv)
    else: main(int(sys.argv[1]) if len(sys.argv) > 1 else 80)
