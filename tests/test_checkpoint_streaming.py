"""The streaming engine: transforms written in released chunks (threaded transposes), zero-copy
views of memory-mapped files, and Orbax output saved batch by batch and restored sharded."""
import os
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
import torch
from flax import nnx

from harness import import_source
from retarget.cli import main
from retarget.weights import orbax_io, transforms
from retarget.weights.checkpoint import open_checkpoint
from retarget.weights.convert import abstract_model, convert_weights
from retarget.weights.safetensors_io import SafetensorsReader
from retarget.weights.transforms import parse_transform

@pytest.fixture
def resnet(resnet_checkpoint_setup):
    pair, module, tmp = resnet_checkpoint_setup
    if not (tmp / "rn.pt").exists():
        torch.save(pair.torch_model.state_dict(), tmp / "rn.pt")
    return tmp, module, pair


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 4 KB and threads from 64 KB up: small test arrays take every path."""
    monkeypatch.setattr(transforms, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(transforms, "PARALLEL_BYTES", 65536)


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16, np.float16, np.int64, np.bool_])
@pytest.mark.parametrize("shape", [(300, 257), (257, 300), (1, 5000), (5000, 1), (64, 64)])
def test_transpose_in_released_chunks_is_exact(small_chunks, dtype, shape):
    array = (np.random.default_rng(0).standard_normal(shape) * 50).astype(dtype)
    out, released = np.empty(shape[::-1], dtype), []
    parse_transform("transpose").fill(array, out, lambda lo, hi: released.append((lo, hi)))
    assert out.tobytes() == np.ascontiguousarray(array.T).tobytes()
    # every byte of the source released once, in order, after it was copied
    assert released[0][0] == 0 and released[-1][1] == array.nbytes
    assert all(a[1] == b[0] for a, b in zip(released, released[1:]))


@pytest.mark.parametrize("text", ["identity", "transpose", "permute:2,3,1,0"])
def test_fill_casts_to_the_destination_dtype(small_chunks, text):
    transform = parse_transform(text)
    array = np.random.default_rng(1).standard_normal((24, 20, 3, 3)).astype(np.float32)
    if text == "transpose":
        array = array.reshape(480, 9)
    out = np.empty(transform.target_shape(array.shape), ml_dtypes.bfloat16)
    transform.fill(array, out)
    expected = transform.apply(array).astype(ml_dtypes.bfloat16)
    assert out.tobytes() == expected.tobytes()


def test_mapped_views_equal_reads_and_survive_release(tmp_path):
    from safetensors.numpy import save_file
    arrays = {"a": np.arange(10000, dtype=np.float32).reshape(100, 100),
              "b": np.arange(7, dtype=np.int16), "empty": np.zeros((0, 3), np.float32)}
    save_file(arrays, tmp_path / "x.safetensors")
    reader = SafetensorsReader(tmp_path / "x.safetensors")
    for key, expected in arrays.items():
        view, release = reader.view(key)
        assert np.array_equal(view, expected) and view.dtype == expected.dtype
        if release:
            release(0, view.nbytes)  # pages dropped from memory, not data: reading again refaults them
            assert np.array_equal(view, expected)
            assert not view.flags.writeable
        reader.prefetch(key)
    del view
    reader.close()


def test_orbax_output_is_saved_in_batches_and_matches_safetensors(resnet, monkeypatch):
    import orbax.checkpoint as ocp
    tmp, module, _ = resnet
    monkeypatch.setattr(orbax_io, "BATCH_BYTES", 4_000)  # many partial saves
    saves = []
    from orbax.checkpoint.experimental.v1 import partial
    real_save = partial.save
    monkeypatch.setattr(partial, "save", lambda path, state: saves.append(1) or real_save(path, state))
    model = abstract_model(lambda: module.resnet_tiny(rngs=nnx.Rngs(0)))
    count, nbytes, _ = orbax_io.write_orbax(open_checkpoint(tmp / "rn.pt"), model, tmp / "batched")
    assert len(saves) > 5 and not (tmp / "batched.partial_save").exists()
    convert_weights(open_checkpoint(tmp / "rn.pt"), model, tmp / "ref.safetensors")
    weights = nnx.state(model, orbax_io.WEIGHTS)
    restored = ocp.StandardCheckpointer().restore(tmp / "batched" / "state", weights)
    reference = open_checkpoint(tmp / "ref.safetensors")
    flat = dict(nnx.to_flat_state(restored))
    assert count == len(flat) == len(reference.infos)
    for path, variable in flat.items():
        expected = reference.read(".".join(map(str, path)))
        value = np.asarray(variable.get_value())
        # floats keep their dtype; counters take the model's integer dtype (int32 unless JAX runs 64-bit)
        assert expected.dtype.kind != "f" or value.dtype == expected.dtype, path
        assert value.tobytes() == expected.astype(value.dtype).tobytes(), path


def test_failed_orbax_conversion_leaves_no_directory(resnet, monkeypatch):
    tmp, module, _ = resnet
    monkeypatch.setattr(orbax_io, "BATCH_BYTES", 4_000)
    source = open_checkpoint(tmp / "rn.pt")
    calls = []

    def failing(key, read=source.reader):
        calls.append(key)
        if len(calls) > 30:
            raise OSError("disk vanished")
        return read(key)

    source.reader = failing
    model = abstract_model(lambda: module.resnet_tiny(rngs=nnx.Rngs(0)))
    with pytest.raises(OSError, match="disk vanished"):
        orbax_io.write_orbax(source, model, tmp / "failed")
    assert not (tmp / "failed").exists() and not (tmp / "failed.partial_save").exists()
    (tmp / "failed.partial_save").mkdir()  # a leftover staging directory is named, not reused
    assert main(["weights", str(tmp / "rn.pt"), "-o", str(tmp / "failed"), "--model",
                 f"{tmp / 'model_flax.py'}:resnet_tiny", "--format", "orbax", "-q"]) == 2


SHARDED_RESTORE = '''
import os, sys
import jax, numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from retarget.weights.convert import load_converted, load_model_class
from retarget.weights.orbax_io import WEIGHTS
tmp = sys.argv[1]
make = lambda: load_model_class(os.path.join(tmp, "model_flax.py:resnet_tiny"))(rngs=nnx.Rngs(0))
mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
def spec(x):
    split = x.ndim >= 2 and x.shape[0] % 2 == 0  # output channels over the "model" axis
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, P("model") if split else P()))
model = make()
abstract = jax.tree.map(spec, nnx.state(nnx.eval_shape(make), WEIGHTS))
restored = ocp.StandardCheckpointer().restore(os.path.join(tmp, "sharded_ckpt", "state"), abstract)
kernels = [v.get_value() for _, v in nnx.to_flat_state(restored) if v.get_value().ndim == 4]
assert len(jax.devices()) == 4 and kernels and all(len(k.sharding.device_set) == 4 for k in kernels)
assert all(k.sharding.spec == P("model") and k.addressable_shards[0].data.shape[0] == k.shape[0] // 2 for k in kernels)
nnx.update(model, restored)
reference = load_converted(os.path.join(tmp, "ref.safetensors"), make())
model.eval(); reference.eval()
x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
got, want = jax.jit(lambda m, x: m(x))(model, x), reference(x)
np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
print("sharded ok", kernels[0].sharding.spec)
'''


def test_orbax_checkpoint_restores_sharded_over_four_devices(resnet):
    tmp, _, _ = resnet
    spec = f"{tmp / 'model_flax.py'}:resnet_tiny"
    for fmt, out in (("orbax", "sharded_ckpt"), ("safetensors", "ref.safetensors")):
        assert main(["weights", str(tmp / "rn.pt"), "-o", str(tmp / out), "--model", spec, "--format", fmt, "-q"]) == 0
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(SHARDED_RESTORE), str(tmp)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sharded ok" in run.stdout


ORDERED = '''
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.blocks = nn.ModuleList([nn.Linear(8, 8) for _ in range(12)])
        self.cls = nn.Parameter(torch.zeros(8))
        self.norm = nn.BatchNorm1d(8)
        self.rnn = nn.LSTM(8, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.register_buffer("scale", torch.ones(8))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.rnn(self.norm(self.embed(x) + self.cls) * self.scale)[0]
'''


def test_back_to_torch_in_state_dict_order(tmp_path):
    import retarget
    torch_module = import_source(ORDERED, "ordered_torch")
    torch.manual_seed(0)
    net = torch_module.Net()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    (tmp_path / "net_flax.py").write_text(retarget.convert(ORDERED).code)
    spec = f"{tmp_path / 'net_flax.py'}:Net"
    assert main(["weights", str(tmp_path / "net.pt"), "-o", str(tmp_path / "net.safetensors"), "--model", spec,
                 "-q"]) == 0
    assert main(["weights", str(tmp_path / "net.safetensors"), "-o", str(tmp_path / "back.pt"), "--model", spec,
                 "--to", "torch", "-q"]) == 0
    back, original = torch.load(tmp_path / "back.pt", weights_only=True), net.state_dict()
    # own parameters, then buffers, then children; blocks 0..11 in numeric order; LSTM layer by layer
    assert list(back) == list(original)
    assert all(torch.equal(back[k], original[k]) for k in original)
