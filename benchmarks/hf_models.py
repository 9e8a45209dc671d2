"""Every Hugging Face transformers model directory, converted and run against torch at a tiny size.

For each `transformers/models/<name>/` of the installed transformers (5.22.2, the test pin): `retarget
convert` the directory into a package; take its config class with its own defaults shrunk (hidden
sizes 32, 2 layers, 4 heads, vocabulary 64, ...); build the torch model (`<X>ForCausalLM`, else
`<X>Model`) and the converted one from the same config object; port the torch state dict with
`retarget.port_weights`; run both on the same token ids with a padding mask and compare the first
output (logits, else the last hidden state) eagerly at rtol=atol=1e-4; encoder-decoders get decoder
ids too, image models (a forward taking `pixel_values`) images at the config's (shrunk) size. Audio,
video and text-with-image models are counted apart. Each model runs in its own process
with a time limit; the report lists every failure with its cause and closes with the totals.

    python benchmarks/hf_models.py [--only REGEX] [--work DIR] [--json FILE] [--timeout S] [--workers N]
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SHRINK = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": 64, "max_position_embeddings": 64, "head_dim": 8,
          "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, "d_model": 32, "d_ff": 48,
          "num_layers": 2, "num_heads": 4, "d_kv": 8, "ffn_dim": 48, "encoder_layers": 2, "decoder_layers": 2,
          "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 48,
          "decoder_ffn_dim": 48, "moe_intermediate_size": 16, "num_experts": 4, "num_local_experts": 4,
          "num_experts_per_tok": 2, "kv_lora_rank": 8, "q_lora_rank": 8, "qk_rope_head_dim": 4,
          "qk_nope_head_dim": 4, "v_head_dim": 8, "sliding_window": 4, "image_size": 32, "patch_size": 4}
TOL = 1e-4


def model_dirs(root: Path, only: str | None) -> list[str]:
    names = sorted(p.name for p in (root / "models").iterdir() if (p / "__init__.py").exists()
                   and any(p.glob("modeling_*.py")))
    return [n for n in names if not only or re.search(only, n)]


def tiny_config(config_class):
    """The config with its own defaults, sizes shrunk where the config has them; eager attention."""
    defaults = config_class()
    values = {k: v for k, v in SHRINK.items() if hasattr(defaults, k) and isinstance(getattr(defaults, k), int)}
    config = config_class(**values)
    config._attn_implementation = "eager"
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if isinstance(getattr(config, key, None), int) and getattr(config, key) >= 64:
            setattr(config, key, 0)
    return config


def _classes(module, name: str):
    """(config class, model class) of a modeling module: `<X>ForCausalLM` first, else `<X>Model`."""
    models = {k: v for k, v in vars(module).items() if inspect.isclass(v) and k.endswith(("ForCausalLM", "Model"))
              and not k.endswith("PreTrainedModel") and getattr(v, "__module__", "") == module.__name__}
    pick = sorted(models, key=lambda k: (not k.endswith("ForCausalLM"), len(k)))
    if not pick:
        return None, None
    chosen = models[pick[0]]
    return getattr(chosen, "config_class", None), pick[0]


def check(name: str, work: Path, result: dict) -> dict:
    """One model directory, in this process: convert, build, port, compare (`result` tells the stage reached)."""
    import importlib

    import numpy as np
    import torch
    import transformers
    result.update(name=name, stage="convert")
    out = work / "out" / name
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "retarget.cli", "convert",
                           str(Path(transformers.__file__).parent / "models" / name), "-o", str(out)],
                          capture_output=True, text=True)
    result.update(exit=done.returncode, escapes=len(re.findall(r": RT\d+ ", done.stderr)),
                  convert_seconds=round(time.perf_counter() - start, 1))
    torch_module = importlib.import_module(f"transformers.models.{name}.modeling_{name}")
    config_class, model_name = _classes(torch_module, name)
    if model_name is None or config_class is None:
        return {**result, "stage": "no text model class"}
    result["stage"] = "config"  # the config class refuses the shrunk sizes: not a conversion result
    config = tiny_config(config_class)
    inputs = model_inputs(inspect.signature(getattr(torch_module, model_name).forward).parameters, config)
    if inputs is None:
        return {**result, "stage": "not a text or image model", "model": model_name}
    result.update(stage="torch", model=model_name)
    torch.manual_seed(0)
    torch_model = getattr(torch_module, model_name)(config).eval()
    with torch.no_grad():
        expected = _first(torch_model(**{k: torch.from_numpy(v) for k, v in inputs.items()}))
    if float(expected.abs().max()) < 1e-6:  # nothing to compare (a CNN's features vanish at the tiny size)
        return {**result, "stage": "torch", "cause": "torch's output is zero at the shrunk config"}
    result["stage"] = "build"
    sys.path.insert(0, str(work / "out"))
    from flax import nnx
    import jax.numpy as jnp
    import retarget
    converted = importlib.import_module(f"{name}.modeling_{name}")
    model = getattr(converted, model_name)(config, rngs=nnx.Rngs(0))
    result["stage"] = "port"
    retarget.port_weights(torch_model.state_dict(), model)
    model.eval()
    result["stage"] = "run"
    got = _first(model(**{k: jnp.asarray(v) for k, v in inputs.items()}))
    error = float(np.max(np.abs(np.asarray(got, np.float64) - expected.numpy()) / (TOL + TOL * np.abs(expected.numpy()))))
    return {**result, "stage": "done", "error": error, "equal": error <= 1.0}


def model_inputs(params, config) -> dict | None:
    """Token ids with a left-padded row (and decoder ids for encoder-decoders), or images at the
    config's size; None for other models (audio, video, text and image together)."""
    import numpy as np
    rng = np.random.default_rng(0)
    if "input_ids" in params and "pixel_values" not in params:
        mask = np.ones((2, 7), np.int64)
        mask[1, :2] = 0
        inputs = {"input_ids": rng.integers(1, 64, (2, 7)), "attention_mask": mask}
        if "decoder_input_ids" in params:
            inputs["decoder_input_ids"] = rng.integers(1, 64, (2, 5))
        return inputs
    size, channels = getattr(config, "image_size", 32), getattr(config, "num_channels", 3)
    size = size if isinstance(size, int) else 32  # CNN configs name no size: any image runs
    if "pixel_values" in params and "input_ids" not in params and isinstance(channels, int):
        return {"pixel_values": rng.normal(size=(2, channels, size, size)).astype(np.float32)}
    return None


def _first(output):
    for key in ("logits", "last_hidden_state"):
        value = getattr(output, key, None)
        if value is not None:
            return value
    return output[0]


def run_one(name: str, work: Path, timeout: float) -> dict:
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", name, "--work", str(work)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"name": name, "stage": "timeout"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    return {"name": name, "stage": "crash", "cause": (done.stderr.strip().splitlines() or ["?"])[-1][:200]}


def worker(name: str, work: Path) -> None:
    result = {"name": name}
    try:
        result = check(name, work, result)
    except Exception as exc:  # the cause, in words, for the report
        result["cause"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        import traceback
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/out/" in f.filename]
        if frames:
            result["where"] = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"
    print(json.dumps(result, default=str))


def report(records: list[dict]) -> None:
    skipped = ("no text model class", "not a text or image model", "config", "torch", "timeout", "convert")
    text = [r for r in records if r.get("stage") not in skipped]  # torch's own model ran at the tiny size
    for r in records:
        verdict = "equal" if r.get("equal") else r.get("stage")
        cause = r.get("cause") or (f"max error {r['error']:.3g}x tolerance" if "error" in r else "")
        print(f"{r['name']:32s} {verdict:20s} exit={r.get('exit')} escapes={r.get('escapes')} {cause} {r.get('where', '')}")
    equal = sum(bool(r.get("equal")) for r in text)
    built = sum(r.get("stage") in ("port", "run", "done") for r in text)
    converted = sum(r.get("exit") in (0, 1) for r in records)
    unmeasured = sum(r.get("stage") in ("torch", "config") for r in records)
    print(f"\nTOTAL {len(records)} model directories: converted {converted}; text and image models torch runs at "
          f"the tiny size {len(text)} ({unmeasured} more fail in torch at the shrunk config): built {built}, "
          f"equal {equal} ({100 * equal / max(len(text), 1):.0f}%)")
    causes: dict[str, int] = {}
    for r in text:
        if not r.get("equal"):
            key = f"{r.get('stage')}: {(r.get('cause') or '').split(':')[0]}"
            causes[key] = causes.get(key, 0) + 1
    for key, count in sorted(causes.items(), key=lambda kv: -kv[1]):
        print(f"  {count:4d}  {key}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="regular expression on model directory names")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache/retarget/hf_models")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--workers", type=int, default=1, help="model processes at once (all directories: use the cores)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.work)
        return 0
    import transformers
    args.work.mkdir(parents=True, exist_ok=True)
    names = model_dirs(Path(transformers.__file__).parent, args.only)
    with ThreadPoolExecutor(max_workers=args.workers) as pool:  # each model is its own process
        futures = [pool.submit(run_one, name, args.work, args.timeout) for name in names]
        records = []
        for future in futures:
            records.append(future.result())
            print(json.dumps(records[-1], default=str), file=sys.stderr, flush=True)
    report(records)
    if args.json:
        args.json.write_text(json.dumps(records, indent=1, default=str))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.exit(main())
