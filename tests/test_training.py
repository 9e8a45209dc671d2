"""Training scripts convert with no escape hatches, run, and track torch's per-epoch losses.

Each script in tests/training/ has `train(model, data...) -> per-epoch numbers`. Both sides
start from the same weights (ported with the rules) and see the same batches; dropout is off.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import retarget
from harness import imports_torch, import_source

SCRIPTS = Path(__file__).parent / "training"


def _load(name: str):
    source = (SCRIPTS / f"{name}.py").read_text()
    result = retarget.convert(source, path=f"{name}.py")
    assert result.clean, [str(d) for d in result.diagnostics]
    assert not imports_torch(result.code)
    assert ("@nnx.jit" in result.code) == ("backward()" in source)
    return import_source(source, f"torch_{name}"), import_source(result.code, f"flax_{name}"), result.code


def _pair(tmod, fmod, cls: str, **kwargs):
    torch.manual_seed(0)
    tmodel = getattr(tmod, cls)(**kwargs)
    fmodel = getattr(fmod, cls)(**kwargs, rngs=nnx.Rngs(0))
    retarget.port_weights(tmodel.state_dict(), fmodel)
    return tmodel, fmodel


def _data(seed: int, *specs):
    rng = np.random.default_rng(seed)
    out = []
    for shape, kind in specs:
        if kind == "float":
            out.append(rng.standard_normal(shape).astype(np.float32))
        elif kind == "unit":
            out.append(rng.random(shape).astype(np.float32))
        else:
            out.append(rng.integers(0, kind, shape).astype(np.int64))
    return out


def _compare(torch_values, flax_values):
    assert len(torch_values) == len(flax_values)
    np.testing.assert_allclose(np.asarray(flax_values, np.float64), np.asarray(torch_values, np.float64), rtol=1e-3)


def test_mlp_adam_dataloader():
    tmod, fmod, _ = _load("mlp_adam")
    tmodel, fmodel = _pair(tmod, fmod, "MLP", d_in=10, d_hidden=32, n_classes=3)
    X, y = _data(0, ((64, 10), "float"), ((64,), 3))
    _compare(tmod.train(tmodel, torch.tensor(X), torch.tensor(y)), fmod.train(fmodel, X, y))


def test_cnn_batchnorm_sgd_steplr():
    tmod, fmod, code = _load("cnn_sgd")
    assert "StepLR(optimizer" in code and "inject_hyperparams(torch_sgd)" in code
    tmodel, fmodel = _pair(tmod, fmod, "SmallCNN")
    X, y = _data(1, ((40, 1, 8, 8), "float"), ((40,), 4))
    _compare(tmod.train(tmodel, torch.tensor(X), torch.tensor(y)), fmod.train(fmodel, X, y))


def test_gpt_adamw_warmup_cosine_clipping():
    tmod, fmod, code = _load("gpt_adamw")
    assert "clip_grad_norm(grads, 1.0)" in code
    tmodel, fmodel = _pair(tmod, fmod, "GPT")
    (data,) = _data(2, ((16, 17), 32))
    _compare(tmod.train(tmodel, torch.tensor(data)), fmod.train(fmodel, data))


def test_gradient_accumulation():
    """backward() every batch, step()/zero_grad() every third: the update uses the summed gradients."""
    tmod, fmod, code = _load("accumulate")
    assert "accumulated_grads = add_grads(accumulated_grads, grads)" in code
    assert "optimizer.update(model, accumulated_grads)" in code and "RETARGET-TODO" not in code
    tmodel, fmodel = _pair(tmod, fmod, "MLP")
    X, y = _data(5, ((48, 8), "float"), ((48,), 3))
    expected = tmod.train(tmodel, torch.tensor(X), torch.tensor(y))
    got = fmod.train(fmodel, X, y)
    assert expected[1] != pytest.approx(expected[0], rel=1e-3)  # the updates happened
    _compare(expected, got)
    np.testing.assert_allclose(np.asarray(fmodel.fc1.kernel[...]), tmodel.fc1.weight.detach().numpy().T,
                               rtol=1e-4, atol=1e-5)


def test_gan_two_models_two_optimizers():
    """Discriminator step (generator output detached), then generator step through the discriminator."""
    tmod, fmod, code = _load("gan")
    assert "def opt_d_step(disc, opt_d, gen, z, x):" in code and "def opt_g_step(gen, opt_g, disc, z):" in code
    tgen, fgen = _pair(tmod, fmod, "Generator")
    tdisc, fdisc = _pair(tmod, fmod, "Discriminator")
    real, noise = _data(6, ((32, 6), "float"), ((32, 4), "float"))
    expected = tmod.train(tgen, tdisc, torch.tensor(real), torch.tensor(noise))
    _compare(expected, fmod.train(fgen, fdisc, real, noise))


def _noise(shape) -> np.ndarray:
    return np.random.default_rng(len(shape) * 7 + shape[-1]).standard_normal(shape).astype(np.float32)


def test_vae_reparameterisation(monkeypatch):
    """Both sides draw their reparameterisation noise from the same fixed source."""
    tmod, fmod, code = _load("vae")
    assert "jax.random.normal(self.rngs()" in code
    tmodel, fmodel = _pair(tmod, fmod, "VAE")
    (X,) = _data(3, ((32, 16), "unit"))
    monkeypatch.setattr(torch, "randn_like", lambda t: torch.tensor(_noise(tuple(t.shape))))
    expected = tmod.train(tmodel, torch.tensor(X))
    monkeypatch.setattr(jax.random, "normal", lambda key, shape, dtype=jnp.float32: jnp.asarray(_noise(shape), dtype))
    _compare(expected, fmod.train(fmodel, X))


@pytest.mark.parametrize("name", ["mlp_adam", "cnn_sgd", "gpt_adamw", "vae", "accumulate"])
def test_converted_script_runs_end_to_end(name, tmp_path, capsys):
    _, fmod, _ = _load(name)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        fmod.main()
    finally:
        os.chdir(cwd)
    values = eval(capsys.readouterr().out.strip().splitlines()[-1])  # the printed list of losses
    assert all(np.isfinite(values))


def test_converted_inference_script_loads_the_original_checkpoint(tmp_path, monkeypatch):
    """torch.load + load_state_dict in the converted script read the file the torch script saved
    (conv kernels permuted, linear transposed, BatchNorm statistics) without torch."""
    tmod, fmod, code = _load("infer_cnn")
    assert "TORCH_LAYOUT = {" in code
    torch.manual_seed(0)
    tmodel = tmod.SmallCNN()
    for module in tmodel.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": tmodel.state_dict(), "epoch": 3}, path)
    (images,) = _data(4, ((5, 1, 8, 8), "float"))
    expected, epoch = tmod.predict(str(path), torch.tensor(images))
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # the converted side must not need torch
    got, got_epoch = fmod.predict(str(path), images, rngs=nnx.Rngs(0))  # functions building layers take rngs
    np.testing.assert_allclose(np.asarray(got), expected.numpy(), rtol=1e-5, atol=1e-5)
    assert got_epoch == epoch == 3
    fmod.resave(str(path), str(tmp_path / "again.pt"), rngs=nnx.Rngs(1))
    again, epoch = fmod.predict(str(tmp_path / "again.pt"), images, rngs=nnx.Rngs(2))
    np.testing.assert_allclose(np.asarray(again), np.asarray(got), rtol=0, atol=0)
    assert epoch == 7
    monkeypatch.undo()  # what the converted script saved is torch's format, with torch's keys and layouts
    saved = torch.load(tmp_path / "again.pt", weights_only=True)
    assert saved["epoch"] == 7 and set(saved["model"]) == set(tmodel.state_dict())
    reloaded = tmod.SmallCNN()
    reloaded.load_state_dict(saved["model"])  # strict
    with torch.no_grad():
        np.testing.assert_allclose(reloaded.eval()(torch.tensor(images)).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


def test_load_state_dict_reports_every_mismatch(tmp_path):
    _, fmod, _ = _load("infer_cnn")
    model = fmod.SmallCNN(rngs=nnx.Rngs(0))
    state = {"head.weight": np.zeros((4, 16), np.float32), "head.bias": np.zeros((5,), np.float32),
             "extra.weight": np.zeros((1,), np.float32)}
    with pytest.raises(Exception, match="missing features.0.weight.*unexpected extra.weight.*shape of head.bias"):
        fmod.load_state_dict(model, state)


UNMATCHED = '''import torch


def probe(model, x):
    loss = model(x).sum()
    loss.backward()
    return [p.grad for p in model.parameters()]


def apply(model, optimizer):
    optimizer.step()


def train(model, x):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.step()
'''


def test_unmatched_backward_and_step_are_reported_with_the_functional_code():
    """No optimizer for a backward(), a step() with no backward(): kept, marked RT110, with the
    functional code to write in the user's names."""
    result = retarget.convert(UNMATCHED, path="unmatched.py")
    found = [(d.line, d.code) for d in result.diagnostics if d.code == "RT110"]
    assert found == [(6, "RT110"), (11, "RT110"), (17, "RT110")]
    message = next(d.message for d in result.diagnostics if d.line == 6)
    assert "nnx.value_and_grad(loss_fn)" in message and "`def loss_fn(" in message
    assert result.code.count("# RETARGET-TODO(RT110)") == 3 and "loss.backward()" in result.code


POLICY_GRADIENT = '''import torch
import torch.nn as nn


def train(policy, episodes):
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for episode in episodes:
        log_probs = [torch.log(policy(state)[0]) for state in episode]
        policy_loss = []
        for log_prob in log_probs:
            policy_loss.append(-log_prob)
        optimizer.zero_grad()
        loss = torch.cat(policy_loss).sum()
        loss.backward()
        optimizer.step()
'''


def test_loss_reaching_the_model_only_through_a_list_is_reported_not_a_crash():
    """REINFORCE: the loss is built from a list filled in a loop, so no statement before
    `backward()` calls the model. This used to crash with an IndexError; it is an RT110 now."""
    result = retarget.convert(POLICY_GRADIENT, path="reinforce.py")
    assert [(d.line, d.code) for d in result.diagnostics if d.code == "RT110"] == [(14, "RT110"), (15, "RT110")]
    assert "loss.backward()" in result.code and "optimizer.step()" in result.code
