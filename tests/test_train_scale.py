"""Paper-scale training options of ``fit``: crop + flip augmentation, multi-step / exponential
schedules, bf16 autocast, and per-epoch checkpoints with bit-identical resume."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reprobust.augment import random_crop_flip
from reprobust.models import build_model
from reprobust.train import fit, multistep_factor, trained_model


def test_random_crop_flip_matches_a_per_image_reference():
    x = torch.rand(6, 3, 10, 12)
    for pad_mode in ("zeros", "reflect"):
        out = random_crop_flip(x, torch.Generator().manual_seed(5), padding=3, pad_mode=pad_mode)
        # Replay the same draws and crop each image with plain slicing.
        g = torch.Generator().manual_seed(5)
        offsets = torch.randint(0, 7, (6, 2), generator=g)
        flips = torch.rand(6, generator=g) < 0.5
        for i in range(6):
            padded = F.pad(x[i:i + 1], (3, 3, 3, 3), mode="constant" if pad_mode == "zeros" else pad_mode)[0]
            dy, dx = offsets[i].tolist()
            ref = padded[:, dy:dy + 10, dx:dx + 12]
            if flips[i]:
                ref = ref.flip(2)
            assert torch.equal(out[i], ref)
    assert flips.any() and not flips.all()


def test_random_crop_flip_without_padding_or_flip_is_identity():
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(random_crop_flip(x, torch.Generator(), padding=0, flip=False), x)


@pytest.mark.parametrize("milestones,gamma", [((3, 6), 0.1), ((100, 105), 0.1), ((2,), 0.5)])
def test_multistep_schedule_matches_torch_multisteplr(milestones, gamma):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=gamma)
    for epoch in range(110):
        assert multistep_factor(epoch, milestones, gamma) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()


def test_per_milestone_factors_give_paper_a_s_lenet_rates():
    rates = [0.01 * multistep_factor(e, (100, 150), (0.5, 0.2)) for e in (0, 99, 100, 149, 150, 199)]
    assert rates == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.001, 0.001])


def test_fit_applies_the_multistep_and_exponential_rates():
    seen = []
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    x, y = torch.rand(8, 1, 2, 2), torch.arange(8) % 2

    def record(epoch, m, h):
        seen.append(opt_lr[0])

    opt_lr = [None]
    orig = torch.optim.SGD.step

    def spy(self, *a, **k):
        opt_lr[0] = self.param_groups[0]["lr"]
        return orig(self, *a, **k)

    torch.optim.SGD.step = spy
    try:
        fit(net, x, y, epochs=5, lr=0.1, schedule="multistep", milestones=(2, 4), gamma=0.1, on_epoch_end=record)
        multistep = list(seen)
        seen.clear()
        fit(net, x, y, epochs=3, lr=0.1, schedule="exponential", gamma=0.5, on_epoch_end=record)
    finally:
        torch.optim.SGD.step = orig
    assert multistep == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    assert seen == pytest.approx([0.1, 0.05, 0.025])


def test_augmentation_changes_training_and_is_seeded(digits):
    x, y = digits.x_train[:200], digits.y_train[:200]

    def run(**kw):
        torch.manual_seed(0)
        net = build_model("cnn", **digits.model_kwargs())
        fit(net, x, y, epochs=2, seed=3, **kw)
        return torch.cat([p.flatten() for p in net.parameters()])

    aug = dict(padding=1, flip=True)
    assert torch.equal(run(augment=aug), run(augment=aug))
    assert not torch.equal(run(augment=aug), run())


def test_amp_autocasts_the_forward_to_bfloat16_only_when_asked():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    dtypes = []
    net[1].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    x, y = torch.rand(8, 1, 2, 2), torch.arange(8) % 3
    fit(net, x, y, epochs=1, batch_size=8)
    fit(net, x, y, epochs=1, batch_size=8, amp=True)
    assert dtypes == [torch.float32, torch.bfloat16]


def test_channels_last_feeds_channels_last_batches_and_trains_alike():
    formats = []
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 3, 8, 8, generator=g), torch.randint(0, 4, (96,), generator=g)  # 3 channels: layouts differ

    def run(**kw):
        torch.manual_seed(0)
        net = build_model("cnn", input_shape=(3, 8, 8), num_classes=4)
        net.block1.register_forward_pre_hook(
            lambda m, i: formats.append(i[0].is_contiguous(memory_format=torch.channels_last)))
        fit(net, x, y, epochs=1, seed=2, batch_size=32, augment=dict(padding=1), **kw)
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    plain = run()
    assert not any(formats)
    formats.clear()
    cl = run(channels_last=True)
    assert formats and all(formats)
    torch.testing.assert_close(cl, plain, rtol=1e-4, atol=1e-5)  # same training, other memory layout


def test_bad_schedule_and_augment_options(digits):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(ValueError, match="one factor per milestone"):
        fit(net, digits.x_train, digits.y_train, epochs=1, schedule="multistep", milestones=(1, 2), gamma=(0.1,))
    with pytest.raises(ValueError, match="unknown augment option 'crop'"):
        fit(net, digits.x_train, digits.y_train, epochs=1, augment={"crop": 4})


# ---- checkpoints and resume ---------------------------------------------------------------------------

class _Interrupt(Exception):
    pass


def _dropout_net():
    torch.manual_seed(11)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(),
                         nn.Linear(4 * 64, 10))


TRAIN = dict(epochs=4, batch_size=64, lr=0.05, schedule="multistep", milestones=(2, 3), gamma=0.1,
             augment=dict(padding=1), noise_std=0.05, adversarial=dict(eps=0.1, steps=2), seed=7)


def test_an_interrupted_run_resumes_bit_identical(tmp_path, digits):
    x, y = digits.x_train[:256], digits.y_train[:256]
    ref = _dropout_net()
    ref_hist = fit(ref, x, y, **TRAIN)

    ckpt = tmp_path / "state.pt"
    net = _dropout_net()

    def stop(epoch, m, h):
        if epoch == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        fit(net, x, y, checkpoint_path=ckpt, on_epoch_end=stop, **TRAIN)
    torch.manual_seed(12345)  # a restarted process has a different global RNG: the checkpoint restores it
    resumed_epochs = []
    net = _dropout_net()
    hist = fit(net, x, y, checkpoint_path=ckpt, on_epoch_end=lambda e, m, h: resumed_epochs.append(e), **TRAIN)
    assert resumed_epochs == [1, 2, 3]  # epoch 1 was interrupted in its hook, before its state was saved
    assert hist == ref_hist
    for (k, a), b in zip(ref.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_checkpoint_of_another_run_is_ignored(tmp_path, digits):
    x, y = digits.x_train[:128], digits.y_train[:128]
    ckpt = tmp_path / "state.pt"
    fit(_dropout_net(), x, y, epochs=2, seed=1, checkpoint_path=ckpt)
    epochs = []
    fit(_dropout_net(), x, y, epochs=2, seed=2, checkpoint_path=ckpt, on_epoch_end=lambda e, m, h: epochs.append(e))
    assert epochs == [0, 1]


def test_an_unreadable_checkpoint_is_a_one_line_error(tmp_path, digits):
    ckpt = tmp_path / "state.pt"
    ckpt.write_bytes(b"garbage")
    with pytest.raises(ValueError) as e:
        fit(_dropout_net(), digits.x_train[:64], digits.y_train[:64], epochs=1, checkpoint_path=ckpt)
    assert "\n" not in str(e.value) and str(ckpt) in str(e.value)


_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    torch.set_num_threads(1)
    from reprobust.data import load_dataset
    from reprobust.models import build_model
    from reprobust.train import fit
    ds = load_dataset("digits", n_train=200)
    torch.manual_seed(0)
    net = build_model("vgg", **ds.model_kwargs())
    kill_at = int(sys.argv[2])
    def hook(epoch, m, h):
        if epoch == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    fit(net, ds.x_train, ds.y_train, epochs=3, batch_size=50, seed=4, augment=dict(padding=1),
        checkpoint_path=sys.argv[1] if sys.argv[1] != "-" else None, on_epoch_end=hook)
    torch.save(net.state_dict(), sys.argv[3])
""")


def test_a_killed_process_restarts_from_its_last_epoch_bit_identical(tmp_path):
    env = dict(os.environ, REPROBUST_THREADS="1", OMP_NUM_THREADS="1")
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    ckpt = str(tmp_path / "state.pt")
    run = lambda *a: subprocess.run([sys.executable, str(script), *a], env=env, capture_output=True, timeout=300)
    assert run("-", "-1", str(tmp_path / "ref.pt")).returncode == 0
    killed = run(ckpt, "1", str(tmp_path / "never.pt"))
    assert killed.returncode == -9 and os.path.exists(ckpt)
    assert run(ckpt, "-1", str(tmp_path / "resumed.pt")).returncode == 0
    ref = torch.load(tmp_path / "ref.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)


def test_trained_model_resumes_and_keeps_every_epoch_checkpoint(tmp_path, cache, monkeypatch):
    spec = {"data": {"name": "digits", "n_train": 200}, "model": {"name": "mlp"},
            "train": {"epochs": 3, "batch_size": 50}, "seed": 0}
    ref, ref_states = trained_model(spec, cache=cache.__class__(tmp_path / "ref"), checkpoints=True, resume=False)

    import reprobust.train as T

    real_fit = T.fit

    def interrupted_fit(*a, on_epoch_end=None, **k):
        def hook(epoch, m, h):
            on_epoch_end(epoch, m, h)
            if epoch == 1:
                raise _Interrupt
        return real_fit(*a, on_epoch_end=hook, **k)

    monkeypatch.setattr(T, "fit", interrupted_fit)
    with pytest.raises(_Interrupt):
        trained_model(spec, cache=cache, checkpoints=True, resume=True)
    assert list((cache.root / "_resume").glob("*/state.pt"))
    monkeypatch.setattr(T, "fit", real_fit)
    net, states = trained_model(spec, cache=cache, checkpoints=True, resume=True)
    assert len(states) == 3
    for a, b in zip(ref_states, states):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), net.state_dict().values()))
    assert not list((cache.root / "_resume").iterdir())


def test_capsnet_reconstruction_regulariser_adds_the_decoder_loss(digits):
    torch.manual_seed(0)
    net = build_model("capsnet", **digits.model_kwargs(), reconstruction=True)
    w0 = net.decoder[0].weight.detach().clone()
    fit(net, digits.x_train[:64], digits.y_train[:64], epochs=1, loss="margin",
        regularizer={"name": "capsule_reconstruction", "weight": 0.0005})
    assert not torch.equal(net.decoder[0].weight, w0)  # the decoder trains only through the regulariser
    with pytest.raises(ValueError, match="reconstruction=True"):
        fit(build_model("capsnet", **digits.model_kwargs()), digits.x_train[:8], digits.y_train[:8], epochs=1,
            loss="margin", regularizer={"name": "capsule_reconstruction"})


def test_resume_keeps_the_best_epoch_and_an_early_stop(tmp_path, digits):
    x, y = digits.x_train[:256], digits.y_train[:256]
    val = (digits.x_test[:100], digits.y_test[:100])
    kw = dict(epochs=10, batch_size=64, lr=0.5, seed=3, validation=val, patience=1, augment=dict(padding=1))
    ref = _dropout_net()
    ref_hist = fit(ref, x, y, **kw)
    net = _dropout_net()
    ckpt = tmp_path / "state.pt"

    def stop(epoch, m, h):
        if epoch == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        fit(net, x, y, checkpoint_path=ckpt, on_epoch_end=stop, **kw)
    net = _dropout_net()
    hist = fit(net, x, y, checkpoint_path=ckpt, **kw)
    assert hist == ref_hist and "best_epoch" in hist
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), net.state_dict().values()))
    # Restarting a finished run trains nothing more and restores the same best weights.
    again = _dropout_net()
    epochs = []
    assert fit(again, x, y, checkpoint_path=ckpt, on_epoch_end=lambda e, m, h: epochs.append(e), **kw) == ref_hist
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), again.state_dict().values()))
    assert epochs == [] and hist["epochs_trained"] < 10  # it did stop early, and stays stopped
