"""Hugging Face transformers modeling files, converted from the installed library (transformers
5.22.2, a test dependency) and run against the torch originals at tiny random configs: logits
eagerly and under nnx.jit with a padding mask, the causal-LM loss with ignored (-100) labels, and the
key/value cache the forward returns. Checkpoints port with `retarget.port_weights` from the torch
model's state dict; the configs are transformers' own objects."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import retarget
from retarget.cli import main

TINY = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, attn_implementation="eager")
MODELS = {  # directory: (config class, model class, config overrides)
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": 3}),  # shorter than the input
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"head_dim": 8}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"pad_token_id": 0}),
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The output directory holding each converted model package (converted once, when first asked)."""
    out = tmp_path_factory.mktemp("hf_models")
    sys.path.insert(0, str(out))
    yield out
    sys.path.remove(str(out))


def _convert(out, name: str):
    source = os.path.join(os.path.dirname(transformers.__file__), "models", name)
    if not (out / name).exists():
        main(["convert", source, "-o", str(out / name), "-q"])  # exit 1: the modular_*.py files report
    code = (out / name / f"modeling_{name}.py").read_text()
    assert "RETARGET-TODO" not in code and "import torch\n" not in code
    return importlib.import_module(f"{name}.modeling_{name}")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_causal_lm_matches_torch(converted, name):
    config_class, model_class, overrides = MODELS[name]
    config = getattr(transformers, config_class)(**{**TINY, **overrides})
    torch.manual_seed(0)
    torch_model = getattr(transformers, model_class)(config).eval()
    module = _convert(converted, name)
    model = getattr(module, model_class)(config, rngs=nnx.Rngs(0))
    retarget.port_weights(torch_model.state_dict(), model)
    model.eval()
    ids = np.random.default_rng(0).integers(1, 64, (2, 7))
    mask = np.ones((2, 7), np.int64)
    mask[1, :2] = 0  # left padding
    labels = np.where(mask == 1, ids, -100)
    with torch.no_grad():
        expected = torch_model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                               labels=torch.from_numpy(labels))
    args = [jnp.asarray(a) for a in (ids, mask, labels)]
    eager = model(input_ids=args[0], attention_mask=args[1], labels=args[2])
    jitted = nnx.jit(lambda m, i, a, y: m(input_ids=i, attention_mask=a, labels=y))(model, *args)
    for got in (eager, jitted):
        np.testing.assert_allclose(np.asarray(got.logits), expected.logits.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(float(got.loss), float(expected.loss), rtol=1e-5)
    if name == "llama":  # the cache the forward fills: each layer's keys, as torch's
        for layer, keys in enumerate(eager.past_key_values.keys):
            np.testing.assert_allclose(np.asarray(keys), expected.past_key_values.layers[layer].keys.numpy(),
                                       rtol=1e-5, atol=1e-5)


def test_attention_dropout_in_training_asks_for_rngs(converted):
    """transformers calls its attention function through a registry, where no `rngs` reaches it: with
    dropout off (eval, p=0) it runs; training with attention dropout says what to pass, never skips it."""
    config = transformers.LlamaConfig(**{**TINY, "attention_dropout": 0.1})
    model = _convert(converted, "llama").LlamaForCausalLM(config, rngs=nnx.Rngs(0))
    ids = jnp.asarray(np.random.default_rng(0).integers(1, 64, (1, 5)))
    model.eval()
    assert model(input_ids=ids).logits.shape == (1, 5, 64)
    model.train()
    with pytest.raises(TypeError, match=r"eager_attention_forward\(\.\.\.\) draws random numbers .* rngs="):
        model(input_ids=ids)


def test_greedy_generation_gives_torchs_tokens(converted):
    """`generate(do_sample=False)`: 32 new tokens, each step jitted against the key/value cache, the
    same ids as torch's `model.generate`, with a left-padded row (positions count from its first token)."""
    config = transformers.LlamaConfig(**TINY, eos_token_id=2, pad_token_id=0, bos_token_id=1)
    torch.manual_seed(0)
    torch_model = transformers.LlamaForCausalLM(config).eval()
    model = _convert(converted, "llama").LlamaForCausalLM(config, rngs=nnx.Rngs(0))
    retarget.port_weights(torch_model.state_dict(), model)
    model.eval()
    ids = np.random.default_rng(0).integers(3, 64, (2, 5))
    mask = np.ones((2, 5), np.int64)
    ids[1, :2], mask[1, :2] = 0, 0
    with torch.no_grad():
        expected = torch_model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                                        max_new_tokens=32, do_sample=False).numpy()
    got = model.generate(jnp.asarray(ids), attention_mask=jnp.asarray(mask), max_new_tokens=32)
    assert expected.shape == (2, 37)
    np.testing.assert_array_equal(np.asarray(got), expected)
    with pytest.raises(NotImplementedError, match="greedy decoding only"):
        model.generate(jnp.asarray(ids), do_sample=True)


def test_every_act2fn_entry_is_transformers_activation():
    """ACT2FN of the support module, name by name, against transformers' torch activations."""
    from transformers.activations import ACT2FN as torch_act2fn

    from retarget.helper_index import SUPPORT_DIR
    spec = importlib.util.spec_from_file_location("runtime_act2fn", SUPPORT_DIR / "transformers_runtime.py")
    runtime = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtime)
    x = np.linspace(-12, 12, 101).astype(np.float32)
    for name, function in runtime.ACT2FN.items():
        expected = torch_act2fn[name](torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(np.asarray(function(jnp.asarray(x))), expected, rtol=1e-5, atol=3e-6, err_msg=name)
