"""Hugging Face transformers modeling files, converted from the installed library (transformers
5.22.2, a test dependency) and run against the torch originals at tiny random configs: logits
eagerly and under nnx.jit with a padding mask, the causal-LM loss with ignored (-100) labels, and the
key/value cache the forward returns; encoders (BERT, RoBERTa), vision (ViT), text and vision
together (CLIP), encoder-decoders (T5, Whisper). Checkpoints port with `retarget.port_weights` from
the torch model's state dict, or load from a `save_pretrained` folder with `retarget.load_pretrained`;
the configs are transformers' own objects."""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys

import jax
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
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64}),
}
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
IMAGE = dict(image_size=16, patch_size=4, num_channels=3)
SEQ2SEQ = dict(vocab_size=64, d_model=32, pad_token_id=0, decoder_start_token_id=1, eos_token_id=2)


def _ids(rng, shape=(2, 7)):
    return rng.integers(3, 64, shape)


def _padded():
    mask = np.ones((2, 7), np.int64)
    mask[1, 5:] = 0
    return mask


def _inputs(name: str, rng) -> dict:
    """The forward's inputs for each architecture beyond the decoder-only ones (numpy, batch of 2)."""
    if name in ("bert", "roberta"):
        return {"input_ids": _ids(rng), "attention_mask": _padded(),
                "token_type_ids": (np.arange(7)[None] > 3).astype(np.int64).repeat(2, 0)}
    if name == "vit":
        return {"pixel_values": rng.normal(size=(2, 3, 16, 16)).astype(np.float32)}
    if name == "clip":
        return {"input_ids": _ids(rng), "attention_mask": _padded(),
                "pixel_values": rng.normal(size=(2, 3, 16, 16)).astype(np.float32)}
    if name == "t5":
        return {"input_ids": _ids(rng), "attention_mask": _padded(), "labels": _ids(rng, (2, 5))}
    return {"input_features": rng.normal(size=(2, 8, 20)).astype(np.float32),
            "decoder_input_ids": _ids(rng, (2, 5)), "labels": _ids(rng, (2, 5))}


OTHERS = {  # directory: (model class, config, outputs compared)
    "bert": ("BertForMaskedLM", lambda: transformers.BertConfig(vocab_size=64, max_position_embeddings=32, **SMALL),
             ("logits",)),
    "roberta": ("RobertaModel", lambda: transformers.RobertaConfig(
        vocab_size=64, max_position_embeddings=32, pad_token_id=1, **SMALL), ("last_hidden_state", "pooler_output")),
    "vit": ("ViTForImageClassification", lambda: transformers.ViTConfig(num_labels=3, **SMALL, **IMAGE), ("logits",)),
    "clip": ("CLIPModel", lambda: transformers.CLIPConfig(
        text_config=dict(vocab_size=64, max_position_embeddings=16, **SMALL), vision_config=dict(**SMALL, **IMAGE),
        projection_dim=16), ("logits_per_image", "text_embeds", "image_embeds")),
    "t5": ("T5ForConditionalGeneration", lambda: transformers.T5Config(
        d_kv=8, d_ff=48, num_layers=2, num_heads=4, **SEQ2SEQ), ("logits", "loss", "encoder_last_hidden_state")),
    "whisper": ("WhisperForConditionalGeneration", lambda: transformers.WhisperConfig(
        encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
        decoder_ffn_dim=48, num_mel_bins=8, max_source_positions=10, max_target_positions=16, **SEQ2SEQ),
        ("logits", "loss")),
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The output directory holding each converted model package (converted once, when first asked)."""
    out = tmp_path_factory.mktemp("hf_models")
    sys.path.insert(0, str(out))
    yield out
    sys.path.remove(str(out))


ESCAPES = {"t5": 1, "whisper": 1}  # `tensor.requires_grad = ...` (gradient checkpointing, freeze_encoder)


def _convert(out, name: str):
    source = os.path.join(os.path.dirname(transformers.__file__), "models", name)
    if not (out / name).exists():
        main(["convert", source, "-o", str(out / name), "-q"])  # exit 1: the modular_*.py files report
    code = (out / name / f"modeling_{name}.py").read_text()
    assert code.count("RETARGET-TODO") == ESCAPES.get(name, 0)
    assert not re.search(r"^\s*(import|from) (torch|transformers\.(?!models))", code, re.M)
    importlib.invalidate_caches()
    return importlib.import_module(f"{name}.modeling_{name}")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_causal_lm_matches_torch(converted, name):
    config_class, model_class, overrides = MODELS[name]
    config = getattr(transformers, config_class)(**{**TINY, **overrides})
    config._attn_implementation = "eager"
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


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_encoder_vision_and_seq2seq_models_match_torch(converted, tmp_path, name):
    """Each output the torch model returns, eagerly and under nnx.jit, the converted model built from the
    config and weights of the torch model's `save_pretrained` folder."""
    model_class, make_config, keys = OTHERS[name]
    torch.manual_seed(0)
    torch_model = getattr(transformers, model_class)(make_config()).eval()
    torch_model.save_pretrained(tmp_path)
    config = type(torch_model.config).from_pretrained(tmp_path)
    config._attn_implementation = "eager"
    torch_model.config._attn_implementation = "eager"
    model = getattr(_convert(converted, name), model_class)(config, rngs=nnx.Rngs(0))
    retarget.load_pretrained(tmp_path, model)
    model.eval()
    inputs = _inputs(name, np.random.default_rng(0))
    with torch.no_grad():
        expected = torch_model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    arrays = {k: jnp.asarray(v) for k, v in inputs.items()}
    eager = model(**arrays)
    jitted = nnx.jit(lambda m, kw: m(**kw))(model, arrays)
    for got in (eager, jitted):
        for key in keys:
            np.testing.assert_allclose(np.asarray(getattr(got, key)), getattr(expected, key).numpy(),
                                       rtol=1e-4, atol=1e-4, err_msg=key)


def test_frozen_layer_is_not_a_parameter(converted):
    """Whisper's `embed_positions.requires_grad_(False)`: its table is in the state (and ports) but not
    among the `nnx.Param`s that gradients and optimizers take."""
    model_class, make_config, _ = OTHERS["whisper"]
    model = getattr(_convert(converted, "whisper"), model_class)(make_config(), rngs=nnx.Rngs(0))
    frozen = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))]
    assert not any("encoder']['embed_positions" in p for p in frozen)
    assert "embed_positions" in str(nnx.state(model).flat_state())


@pytest.mark.parametrize("name, shard", [("gpt2", None), ("llama", "20KB"), ("mistral", None), ("qwen2", None),
                                         ("gemma", None), ("phi3", None)])
def test_save_pretrained_folder_loads_in_one_call(converted, tmp_path, name, shard):
    """`save_pretrained` writes config.json and model.safetensors (GPT-2 without its tied `lm_head`), or
    shards and an index; the config class reads the folder, `retarget.load_pretrained` the weights."""
    config_class, model_class, overrides = MODELS[name]
    torch.manual_seed(0)
    torch_model = getattr(transformers, model_class)(getattr(transformers, config_class)(**{**TINY, **overrides})).eval()
    torch_model.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    assert (tmp_path / ("model.safetensors.index.json" if shard else "model.safetensors")).exists()
    config = getattr(transformers, config_class).from_pretrained(tmp_path)
    model = getattr(_convert(converted, name), model_class)(config, rngs=nnx.Rngs(1))
    retarget.load_pretrained(tmp_path, model)
    model.eval()
    ids = np.random.default_rng(0).integers(1, 64, (2, 7))
    with torch.no_grad():
        expected = torch_model(input_ids=torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(model(input_ids=jnp.asarray(ids)).logits), expected, rtol=1e-4, atol=1e-4)


def test_load_pretrained_errors_name_the_folder(converted, tmp_path):
    from retarget.weights.safetensors_io import CheckpointError
    model = _convert(converted, "llama").LlamaForCausalLM(transformers.LlamaConfig(**TINY), rngs=nnx.Rngs(0))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"no model\.safetensors.*config\.json"):
        retarget.load_pretrained(tmp_path, model)
    with pytest.raises(CheckpointError, match="not a model directory"):
        retarget.load_pretrained(tmp_path / "config.json", model)


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


@pytest.mark.parametrize("name", sorted(MODELS))
def test_greedy_generation_gives_torchs_tokens(converted, name, monkeypatch):
    """`generate(do_sample=False)`: 32 new tokens, each step jitted against a fixed-size key/value cache
    (compiled twice in all), the same ids as torch's `model.generate`, with a left-padded row
    (positions count from its first token)."""
    config_class, model_class, overrides = MODELS[name]
    config = getattr(transformers, config_class)(**{**TINY, **overrides, "eos_token_id": 2, "pad_token_id": 0,
                                                    "bos_token_id": 1})
    torch.manual_seed(0)
    torch_model = getattr(transformers, model_class)(config).eval()
    model = getattr(_convert(converted, name), model_class)(config, rngs=nnx.Rngs(0))
    retarget.port_weights(torch_model.state_dict(), model)
    model.eval()
    ids = np.random.default_rng(0).integers(3, 64, (2, 5))
    mask = np.ones((2, 5), np.int64)
    ids[1, :2], mask[1, :2] = 0, 0
    with torch.no_grad():
        expected = torch_model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                                        max_new_tokens=32, do_sample=False).numpy()
    runtime = sys.modules[f"{name}._torch_compat"]
    traces = []
    step = runtime._greedy_step
    monkeypatch.setattr(runtime, "_greedy_step", lambda *a: traces.append(1) or step(*a))  # runs when traced
    got = model.generate(jnp.asarray(ids), attention_mask=jnp.asarray(mask), max_new_tokens=32)
    assert len(traces) == 2  # the fixed-size cache: one compilation for the prompt, one for a token
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


def test_every_output_class_has_transformers_fields_and_a_rule():
    """Each output dataclass of `transformers.modeling_outputs`: a definition of the same name in the
    support module with the same fields in the same order (plus `cache` beside `past_key_values`), and a rule."""
    import dataclasses
    import inspect

    from transformers import modeling_outputs
    from transformers.utils import ModelOutput

    from retarget.helper_index import SUPPORT_DIR
    from retarget.rules import default_rules
    spec = importlib.util.spec_from_file_location("runtime_outputs", SUPPORT_DIR / "transformers_runtime.py")
    runtime = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtime)
    rules = default_rules()
    classes = {n: c for n, c in vars(modeling_outputs).items() if inspect.isclass(c) and issubclass(c, ModelOutput)
               and c.__module__ == modeling_outputs.__name__}
    assert len(classes) == 43
    for name, cls in classes.items():
        ours = [f.name for f in dataclasses.fields(getattr(runtime, name)) if f.name != "cache"]
        assert ours == [f.name for f in dataclasses.fields(cls)], name
        assert rules.get("attribute", f"transformers.modeling_outputs.{name}").templates[0].text == name
