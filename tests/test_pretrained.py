"""A MANN whose encoder starts from a trained ProtoNets checkpoint (fewshot_mann/pretrained.py),
on the real Omniglot files: the weights arrive, stay fixed when frozen, and a checkpoint that
trained on a run's held-out characters is refused."""

from __future__ import annotations

import pytest
import torch

from fewshot_mann.checkpoint import load_checkpoint, model_from_checkpoint
from fewshot_mann.cli import main
from fewshot_mann.models.encoder import bare

pytestmark = pytest.mark.train  # a ProtoNets encoder trained, then convbase MANN runs


@pytest.fixture(scope="module")
def protonet(tmp_path_factory, data_root, cache_dir):
    """A ProtoNet trained for 20 steps on the Vinyals training classes (a few seconds)."""
    out = tmp_path_factory.mktemp("protonet")
    assert main(["train", "--method", "protonet", "--data-root", str(data_root),
                 "--cache-dir", str(cache_dir), "--device", "cpu", "--steps", "20",
                 "--n-way", "5", "--eval-every", "20", "--eval-episodes", "10", "--quiet",
                 "--out", str(out)]) == 0
    return out / "model.pt"


def protonet_cnn(path) -> dict[str, torch.Tensor]:
    """The ConvBase weights of a ProtoNets checkpoint."""
    return model_from_checkpoint(load_checkpoint(path))[0].encoder.state_dict()


def train_mann(data_root, cache_dir, out, *extra: str) -> int:
    return main(["train", "--data-root", str(data_root), "--cache-dir", str(cache_dir),
                 "--split", "vinyals", "--image-size", "28", "--no-rotate", "--model", "mann",
                 "--encoder", "convbase", "--batch-size", "4", "--eval-every", "3",
                 "--eval-episodes", "8", "--device", "cpu", "--quiet", "--out", str(out),
                 *extra])


def encoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The ConvBase weights and batch-norm statistics, whether wrapped in Frozen or not."""
    return bare(model.encoder).net.state_dict()


@pytest.mark.parametrize("frozen", [True, False])
def test_encoder_starts_from_the_protonet_and_stays_fixed_when_frozen(
        tmp_path, data_root, cache_dir, protonet, frozen):
    flags = ("--encoder-init", str(protonet)) + (("--freeze-encoder",) if frozen else ())
    run = tmp_path / "run"
    assert train_mann(data_root, cache_dir, run, "--steps", "3", *flags) == 0
    source = protonet_cnn(protonet)
    trained, cfg, _ = model_from_checkpoint(load_checkpoint(run / "model.pt"))
    assert cfg.model.encoder_init == str(protonet) and cfg.model.freeze_encoder is frozen
    after = encoder_state(trained)
    assert after.keys() == source.keys()
    weights = [k for k in source if k.endswith(("conv.weight", "normalize.weight"))]
    unchanged = [k for k in source if torch.equal(after[k], source[k])]
    if frozen:  # weights and batch-norm running statistics exactly as trained by the ProtoNet
        assert unchanged == list(source)
    else:  # fine-tuned: every conv and batch-norm weight moved away from its start
        assert not set(weights) & set(unchanged)
    # the optimiser updates the rest of the model, and the encoder only when not frozen
    optimised = len(load_checkpoint(run / "checkpoint.pt")["optimizer"]["state"])
    encoder_params = len(list(bare(trained.encoder).parameters()))
    total = len(list(trained.parameters()))
    assert optimised == (total - encoder_params if frozen else total)


def test_resumed_run_keeps_its_frozen_encoder(tmp_path, data_root, cache_dir, protonet):
    run = tmp_path / "run"
    flags = ("--encoder-init", str(protonet), "--freeze-encoder", "--checkpoint-every", "2")
    assert train_mann(data_root, cache_dir, run, "--steps", "2", *flags) == 0
    assert train_mann(data_root, cache_dir, run, "--steps", "4", "--resume", *flags) == 0
    payload = load_checkpoint(run / "model.pt")
    assert payload["step"] == 4
    model = model_from_checkpoint(payload)[0]
    source = protonet_cnn(protonet)
    assert all(torch.equal(encoder_state(model)[k], v) for k, v in source.items())


def test_an_encoder_trained_on_the_validation_classes_starts_a_trainval_run(
        tmp_path_factory, tmp_path, data_root, cache_dir, capsys):
    """A ProtoNet of --split vinyals-trainval (Snell et al.'s final training) saw the vinyals
    validation classes: refused where a run validates on them (vinyals), taken where it
    trains on them too (vinyals-trainval, whose classes are the vinyals train + val, tested on
    the same test). That ProtoNet run, without validation classes, has no held-out
    evaluation."""
    from fewshot_mann.data.splits import shipped_split

    split, vinyals = shipped_split("vinyals-trainval"), shipped_split("vinyals")
    assert sorted(split.train) == sorted(vinyals.train + vinyals.val)
    assert split.test == vinyals.test and not split.val
    out = tmp_path_factory.mktemp("protonet-trainval")
    assert main(["train", "--method", "protonet", "--split", "vinyals-trainval",
                 "--data-root", str(data_root), "--cache-dir", str(cache_dir), "--device",
                 "cpu", "--steps", "2", "--n-way", "5", "--eval-every", "2",
                 "--eval-episodes", "10", "--quiet", "--out", str(out)]) == 0
    log = (out / "train_log.jsonl").read_text()
    assert '"step": 2' in log and "val_accuracy" not in log
    init = ("--encoder-init", str(out / "model.pt"), "--freeze-encoder", "--steps", "1")
    capsys.readouterr()
    assert train_mann(data_root, cache_dir, tmp_path / "refused", *init) == 2
    assert "holds out for validation or test" in capsys.readouterr().err
    assert train_mann(data_root, cache_dir, tmp_path / "taken", *init,
                      "--split", "vinyals-trainval") == 0
    assert model_from_checkpoint(load_checkpoint(tmp_path / "taken" / "model.pt"))[1] \
        .data.split == "vinyals-trainval"


def test_leaky_or_mismatched_init_is_refused(tmp_path, data_root, cache_dir, protonet, capsys):
    init = ("--encoder-init", str(protonet), "--steps", "1")
    refused = {  # run name: (extra flags, what the one-line error says)
        # santoro holds out characters that the Vinyals training classes contain
        "leak": (("--split", "santoro", *init), "holds out for validation or test"),
        "size": (("--image-size", "20", *init), "trained on 1x28x28 images"),
        "kind": (("--encoder", "conv", *init), "starts a 'convbase' encoder"),
        "freeze": (("--freeze-encoder", "--steps", "1"), "set model.encoder_init"),
    }
    for name, (flags, message) in refused.items():
        capsys.readouterr()
        assert train_mann(data_root, cache_dir, tmp_path / name, *flags) == 2, name
        assert message in capsys.readouterr().err, name
        assert not (tmp_path / name / "checkpoint.pt").exists(), name  # nothing written
