"""The main job end to end: convert a PyTorch model file and its weights, run both, compare.

1. build the PyTorch model, give it trained-looking weights and BatchNorm statistics,
   and save its state dict as a checkpoint;
2. `retarget convert examples/cifar_net.py -o out/cifar_net_flax.py`;
3. load the checkpoint (weights_only, no pickled code runs) into the converted Flax NNX
   model with `retarget.port_weights`;
4. run both on the same batch in eval mode, eagerly and under nnx.jit, and print the
   largest difference.
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import retarget

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "out"


def torch_model_with_checkpoint(path: Path) -> torch.nn.Module:
    sys.path.insert(0, str(HERE))
    from cifar_net import CifarNet
    torch.manual_seed(0)
    model = CifarNet()
    model.train()
    with torch.no_grad():  # a few batches so BatchNorm statistics are not the defaults
        for _ in range(3):
            model(torch.randn(16, 3, 32, 32) * 2 + 0.5)
    torch.save(model.state_dict(), path)
    return model.eval()


def main() -> int:
    OUT.mkdir(exist_ok=True)
    checkpoint = OUT / "cifar_net.pt"
    torch_model = torch_model_with_checkpoint(checkpoint)

    converted = OUT / "cifar_net_flax.py"
    status = subprocess.call([sys.executable, "-m", "retarget.cli", "convert", str(HERE / "cifar_net.py"),
                              "-o", str(converted)])
    print(f"retarget convert exit status: {status} (0 = no escape hatches)")

    spec = importlib.util.spec_from_file_location("cifar_net_flax", converted)
    flax_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flax_module)
    flax_model = flax_module.CifarNet(rngs=nnx.Rngs(0))
    state_dict = torch.load(checkpoint, weights_only=True)
    retarget.port_weights(state_dict, flax_model)
    flax_model.eval()

    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    eager = np.asarray(flax_model(jnp.asarray(x)))
    jitted = np.asarray(nnx.jit(lambda m, v: m(v))(flax_model, jnp.asarray(x)))
    print(f"ported {len(state_dict)} tensors from {checkpoint.name} into {converted.name}")
    print(f"max |flax - torch| eager: {np.abs(eager - expected).max():.3e}")
    print(f"max |flax - torch| jit:   {np.abs(jitted - expected).max():.3e}")
    ok = np.allclose(eager, expected, rtol=1e-4, atol=1e-4) and np.allclose(jitted, expected, rtol=1e-4, atol=1e-4)
    print("OK: outputs match" if ok else "MISMATCH")
    return 0 if ok and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
