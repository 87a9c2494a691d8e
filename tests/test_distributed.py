"""Data-parallel training over 2 CPU processes (gloo) on real Omniglot steps: the same
parameters as one process training on the same global batch of the same episodes; torchrun
trains, writes once, resumes exactly; a killed process stops the job with a clear error, its
last checkpoint intact."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_cli import TINY
from test_crash_resume import tensors
from test_divergence import tiny_config

from fewshot_mann.checkpoint import load_checkpoint
from fewshot_mann.cli import main
from fewshot_mann.config import Config, replace
from fewshot_mann.episodes import Episodes
from fewshot_mann.training.distributed import rank_seed, shutdown
from fewshot_mann.training.run import make_sampler
from fewshot_mann.training.trainer import Trainer

pytestmark = pytest.mark.train  # other processes / paper-sized runs

WORLD = 2
STEPS = 40  # of the torchrun runs
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
            "--master_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def equivalence_config(data_root: Path, cache_dir: Path) -> Config:
    """Tiny sizes, a moderate key strength (float32 gradients through sharp reads amplify
    rounding: README, The model), 6 updates; evaluation only at the end."""
    cfg = tiny_config(data_root, cache_dir, steps=6, batch_size=4, eval_every=6,
                      checkpoint_every=6, log_every=3, threads=1, grad_clip=1.0)
    return replace(cfg, model={"key_strength_init": 2.0})


def worker(rank: int, port: int, cfg: Config, out: Path) -> None:
    """One of WORLD processes, as torchrun would start it: DDP, then the flat all-reduce that
    CUDA-graphed steps use, each for a fresh run of `cfg`."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        ddp = Trainer.build(cfg, out / "ddp", progress=False)
        ddp.run()
        ddp.forward_model = ddp.model  # drop the DDP wrapper (Trainer.close)
        flat = Trainer.build(cfg, out / "flat", progress=False)
        flat.forward_model = flat.model  # as under --cuda-graph: no DDP wrapper
        flat.run()
    except BaseException:
        shutdown(wait=False)
        raise
    flat.close()


def global_batch(trainer: Trainer) -> None:
    """Make a single-process trainer draw, per update, what the WORLD ranks would draw
    (rank r: its own sampler, seeded with rank_seed(seed, r)), concatenated in rank order."""
    cfg = trainer.cfg
    samplers = [make_sampler(cfg, trainer.imageset, trainer.split.train, side="train",
                             device=trainer.device, seed=rank_seed(cfg.train.seed, r))
                for r in range(WORLD)]

    def sample(batch_size: int) -> Episodes:
        parts = [s.sample(batch_size // WORLD) for s in samplers]
        return Episodes(*(torch.cat(fields) for fields in zip(
            *((p.images, p.targets, p.prev_labels, p.classes, p.presentation) for p in parts),
            strict=True)))

    trainer.train_sampler.sample = sample


def test_two_processes_equal_one_process_on_the_same_global_batch(tmp_path, data_root,
                                                                  cache_dir, omniglot):
    cfg = equivalence_config(data_root, cache_dir)
    mp.start_processes(worker, args=(free_port(), cfg, tmp_path), nprocs=WORLD,
                       start_method="spawn")
    single = Trainer.build(replace(cfg, train={"batch_size": 4 * WORLD}), tmp_path / "single",
                           progress=False)
    global_batch(single)
    single.run()
    expected = single.model.state_dict()
    for mode in ("ddp", "flat"):
        saved = load_checkpoint(tmp_path / mode / "checkpoint.pt")
        assert saved["step"] == 6 and saved["world_size"] == WORLD
        assert len(saved["rank_rng_states"]) == WORLD
        for name, weight in expected.items():
            got = saved["model"][name]
            scale = weight.abs().max().clamp(min=1e-3)
            # the all-reduce sums in another order than the single process: Adam's step of a
            # parameter whose gradient is near zero moves with that rounding (3e-5 of the
            # weights' scale measured on santoro's training classes); a wrong average or a
            # lost rank's share moves the clipped updates by ~lr = 3e-3 a step
            assert (got - weight).abs().max() <= 1e-4 * scale, (mode, name)
        # the logged loss is the mean over the global batch, as in the single process
        logged = [r["loss"] for r in saved["history"] if "loss" in r]
        assert logged == pytest.approx([r["loss"] for r in single.history if "loss" in r],
                                       rel=1e-5)
    # the ranks drew different episodes
    a, b = (make_sampler(cfg, single.imageset, single.split.train, side="train",
                         device=single.device, seed=rank_seed(3, r)).sample(4) for r in (0, 1))
    assert not torch.equal(a.images, b.images)


def train_args(tree: Path, cache: Path, out: Path) -> list[str]:
    return ["train", "--dataset", f"folder:{tree}", "--split", "ratio:0.5", "--cache-dir",
            str(cache), *TINY, "--threads", "1", "--checkpoint-every", "5", "--eval-every", "20",
            "--steps", str(STEPS), "--out", str(out)]


def torchrun(tree: Path, cache: Path, out: Path) -> list[str]:
    return [*TORCHRUN, str(free_port()), "-m", "fewshot_mann.cli", *train_args(tree, cache, out)]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}


@pytest.fixture(scope="module")
def straight(tmp_path_factory, image_tree) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A 2-process torchrun run of STEPS updates, never interrupted."""
    from fewshot_mann.data import FolderDataset

    root = tmp_path_factory.mktemp("torchrun")
    FolderDataset.from_spec(f"folder:{image_tree}", cache_dir=root / "cache")  # decode once
    done = subprocess.run(torchrun(image_tree, root / "cache", root / "straight"), env=ENV,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return root, root / "straight", done


def test_torchrun_trains_and_rank_0_alone_writes(straight):
    _, run, done = straight
    assert done.stdout.count("checkpoint: ") == 1  # rank 0 reports; rank 1 is silent
    saved = load_checkpoint(run / "checkpoint.pt")
    assert saved["step"] == STEPS and saved["world_size"] == WORLD
    assert (run / "model.pt").exists() and (run / "config.toml").exists()
    records = saved["history"]
    logged = (run / "train_log.jsonl").read_text().splitlines()
    # one record per step, written once, after the event of a split without validation classes
    assert len(logged) == len(records) == STEPS + 1 and records[0]["event"] == "no_validation"
    assert records[-1]["episodes"] == STEPS * 4 * WORLD  # the global batch
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.toml",
                                                     "model.pt", "split.json",
                                                     "train_log.jsonl"]


def children(pid: int) -> dict[int, int]:
    """Rank -> pid of the processes torchrun `pid` started (from /proc)."""
    ranks = {}
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or \
                    int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != pid:
                continue
            env = dict(v.split("=", 1) for v in
                       (entry / "environ").read_bytes().decode().split("\0") if "=" in v)
        except (OSError, ValueError):
            continue
        if "RANK" in env:
            ranks[int(env["RANK"])] = int(entry.name)
    return ranks


def test_a_killed_rank_stops_the_job_and_resume_goes_on(straight, image_tree):
    root, reference, _ = straight
    run = root / "killed"
    job = subprocess.Popen(torchrun(image_tree, root / "cache", run), env=ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = run / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    ranks = children(job.pid)
    assert set(ranks) == {0, 1}, ranks
    os.kill(ranks[1], signal.SIGKILL)
    _, err = job.communicate(timeout=90)  # no hang: the job ends on its own
    assert job.returncode != 0
    assert "Signal 9 (SIGKILL)" in err  # torchrun's report names the killed rank...
    # ...and rank 0 says, in one line, what happened and what the checkpoint holds
    line = next(x for x in err.splitlines() if x.startswith("fewshot-mann train: error: rank 0"))
    assert "training stopped" in line and "--resume from it with the same number of " \
                                          "processes (2)" in line, line
    reached = load_checkpoint(checkpoint)["step"]  # intact: it loads, its checksums hold
    assert 5 <= reached < STEPS and f"keeps step {reached}" in line
    assert not (run / "model.pt").exists()

    resumed = subprocess.run([*torchrun(image_tree, root / "cache", run), "--resume"],
                             env=ENV, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    for name in ("model.pt", "checkpoint.pt"):  # exactly the uninterrupted run
        a, b = tensors(load_checkpoint(reference / name)), tensors(load_checkpoint(run / name))
        assert a.keys() == b.keys() and "/model/output.weight" in a
        assert [k for k in a if not torch.equal(a[k], b[k])] == [], name
    assert len((run / "train_log.jsonl").read_text().splitlines()) == STEPS + 1  # and the event


def test_resuming_with_another_world_size_is_one_clear_line(straight, image_tree, capsys):
    root, reference, _ = straight
    before = (reference / "checkpoint.pt").read_bytes()
    assert main([*train_args(image_tree, root / "cache", reference), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "written by a run of 2 training process(es) and this one has 1: resume with the " \
           "same number" in err and "Traceback" not in err
    assert (reference / "checkpoint.pt").read_bytes() == before
