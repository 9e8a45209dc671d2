"""Checkpoint files: readers (torch.save zip without torch's unpickler, safetensors, sharded, npz),
streaming conversion into a converted model's layout, verification, the way back, and bad files."""
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.torch import save_file

import retarget
from harness import Case, build_pair, flatten_outputs, import_source, make_inputs, run_flax, run_torch
from retarget.cli import main
from retarget.weights.checkpoint import open_checkpoint
from retarget.weights.convert import abstract_model, convert_weights, load_converted
from retarget.weights.port import plan
from retarget.weights.safetensors_io import CheckpointError

CASE = Case("resnet.py", "resnet_tiny", {}, [((2, 3, 32, 32), "float")])


@pytest.fixture
def setup(resnet_checkpoint_setup):
    return resnet_checkpoint_setup


def _factory(module):
    return lambda: module.resnet_tiny(rngs=nnx.Rngs(0))


def _assert_outputs_match(pair, model):
    pair.torch_model.eval()
    model.eval()
    inputs = make_inputs(CASE)
    with torch.no_grad():
        expected = flatten_outputs(run_torch(pair.torch_model, inputs))[0]
    np.testing.assert_allclose(flatten_outputs(run_flax(model, inputs))[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["plain", "nested", "ddp", "compiled", "safetensors", "sharded", "npz"])
def test_every_input_format_converts_exactly(setup, layout):
    pair, module, tmp = setup
    sd = pair.torch_model.state_dict()
    path = tmp / f"in_{layout}"
    if layout == "plain":
        path = path.with_suffix(".pt"); torch.save(sd, path)
    elif layout == "nested":
        path = path.with_suffix(".pth"); torch.save({"epoch": 3, "model": sd, "optimizer": {"lr": 0.1}}, path)
    elif layout in ("ddp", "compiled"):
        prefix = "module." if layout == "ddp" else "_orig_mod."
        path = path.with_suffix(".bin"); torch.save({prefix + k: v for k, v in sd.items()}, path)
    elif layout == "safetensors":
        path = path.with_suffix(".safetensors"); save_file(dict(sd), path)
    elif layout == "sharded":
        keys = sorted(sd)
        shards = {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2:]}
        for name, part in shards.items():
            save_file({k: sd[k] for k in part}, tmp / name)
        path = tmp / "model.safetensors.index.json"
        path.write_text(json.dumps({"weight_map": {k: n for n, part in shards.items() for k in part}}))
    else:
        path = path.with_suffix(".npz"); np.savez(path, **{k: v.numpy() for k, v in sd.items()})
    out = tmp / f"out_{layout}.safetensors"
    report = convert_weights(open_checkpoint(path), abstract_model(_factory(module)), out, verify=True)
    assert report.verified and report.tensors == len(sd)
    _assert_outputs_match(pair, load_converted(out, _factory(module)()))


def test_bf16_stays_bf16_and_round_trip_is_bit_exact(setup):
    pair, module, tmp = setup
    sd = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in pair.torch_model.state_dict().items()}
    torch.save(sd, tmp / "bf16.pt")
    flax_file, back = tmp / "bf16.safetensors", tmp / "bf16_back.safetensors"
    assert main(["weights", str(tmp / "bf16.pt"), "-o", str(flax_file), "--model",
                 f"{tmp / 'model_flax.py'}:resnet_tiny", "--verify", "-q"]) == 0
    source = open_checkpoint(flax_file)
    assert {str(dtype) for dtype, _ in source.infos.values()} == {"bfloat16", "int64"}
    assert main(["weights", str(flax_file), "-o", str(back), "--model", f"{tmp / 'model_flax.py'}:resnet_tiny",
                 "--to", "torch", "-q"]) == 0
    from safetensors.torch import load_file
    restored = load_file(back)
    assert set(restored) == set(sd)
    for key, tensor in sd.items():
        assert restored[key].dtype == tensor.dtype and torch.equal(restored[key], tensor), key


def test_npz_output_and_tied_weights(tmp_path):
    pair = build_pair(Case("gpt.py", "gpt_tiny", {}, [((2, 8), "int:50")]))
    module = import_source(pair.conversion.code, "ck_gpt_flax")
    torch.save(pair.torch_model.state_dict(), tmp_path / "gpt.pt")
    out = tmp_path / "gpt.npz"
    factory = lambda: module.gpt_tiny(rngs=nnx.Rngs(0))  # noqa: E731
    report = convert_weights(open_checkpoint(tmp_path / "gpt.pt"), abstract_model(factory), out, fmt="npz",
                             verify=True)
    assert report.tensors == len(pair.torch_model.state_dict()) - 1  # the tied lm_head weight is stored once
    model = load_converted(out, factory())
    model.eval()
    pair.torch_model.eval()
    x = make_inputs(Case("gpt.py", "gpt_tiny", {}, [((2, 8), "int:50")]))
    with torch.no_grad():
        expected = flatten_outputs(run_torch(pair.torch_model, x))[0]
    np.testing.assert_allclose(flatten_outputs(run_flax(model, x))[0], expected, rtol=1e-4, atol=1e-4)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"weight": Payload()}, protocol=2))
        archive.writestr("evil/byteorder", "little")
    with pytest.raises(CheckpointError, match="refusing to load global"):
        open_checkpoint(path)
    assert not marker.exists()
    assert main(["weights", str(path), "-o", str(tmp_path / "out.safetensors"), "--model", "x.py:M", "-q"]) == 2
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def _safetensors_bytes(header: dict, data: bytes, length: int | None = None) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded) if length is None else length) + encoded + data


GOOD = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize("content, message", [
    (b"\x01\x02", "no header length"),
    (_safetensors_bytes(GOOD, b"\x00" * 8, length=200 * 1024 * 1024), "larger than"),
    (_safetensors_bytes(GOOD, b"\x00" * 8, length=4000), "header runs past"),
    (struct.pack("<Q", 5) + b"{oops", "bad header"),
    (_safetensors_bytes(GOOD, b"\x00" * 4), "truncated"),
    (_safetensors_bytes({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\x00" * 12), "overlaps"),
    (_safetensors_bytes({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\x00" * 8), "do not hold"),
    (_safetensors_bytes({"w": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8), "bad header entry"),
])
def test_corrupt_safetensors_exit_2_and_write_nothing(setup, tmp_path, content, message):
    _, _, tmp = setup
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(path)
    out = tmp_path / "out.safetensors"
    assert main(["weights", str(path), "-o", str(out), "--model", f"{tmp / 'model_flax.py'}:resnet_tiny", "-q"]) == 2
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


def test_truncated_torch_file_exit_2(setup, tmp_path):
    pair, _, tmp = setup
    torch.save(pair.torch_model.state_dict(), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.safetensors"
    assert main(["weights", str(tmp_path / "cut.pt"), "-o", str(out), "--model",
                 f"{tmp / 'model_flax.py'}:resnet_tiny", "-q"]) == 2
    assert not out.exists()


def test_unknown_and_mismatched_keys_exit_2_with_nothing_written(setup, tmp_path):
    pair, _, tmp = setup
    sd = dict(pair.torch_model.state_dict())
    sd["extra.weight"] = torch.zeros(3)
    sd["fc.weight"] = torch.zeros(7, 7)
    torch.save(sd, tmp_path / "bad.pt")
    out = tmp_path / "out.safetensors"
    assert main(["weights", str(tmp_path / "bad.pt"), "-o", str(out), "--model",
                 f"{tmp / 'model_flax.py'}:resnet_tiny", "-q"]) == 2
    assert not out.exists()
    with pytest.raises(retarget.WeightsError) as info:
        convert_weights(open_checkpoint(tmp_path / "bad.pt"), abstract_model(
            lambda: import_source((tmp / "model_flax.py").read_text(), "ck_again").resnet_tiny(rngs=nnx.Rngs(0))),
            out)
    assert info.value.unexpected == ["extra.weight"] and info.value.mismatched[0].startswith("fc.weight (7, 7)")


def test_ambiguous_nested_checkpoint_asks_for_select(setup, tmp_path):
    pair, _, _ = setup
    sd = pair.torch_model.state_dict()
    torch.save({"model": sd, "state_dict": sd}, tmp_path / "two.pt")
    torch.save({"teacher": sd, "student": sd}, tmp_path / "unnamed.pt")
    for name in ("two.pt", "unnamed.pt"):
        with pytest.raises(CheckpointError, match="--select"):
            open_checkpoint(tmp_path / name)
    assert len(open_checkpoint(tmp_path / "unnamed.pt", select="teacher").keys()) == len(sd)
    with pytest.raises(CheckpointError, match="no entry 'pupil'"):
        open_checkpoint(tmp_path / "unnamed.pt", select="pupil")


RENAMES = [("transformer.h.", "blocks."), ("ln_1", "norm_a"), ("ln_2", "norm_b"), ("attn.c_attn", "attention.qkv"),
           ("attn.c_proj", "attention.out"), ("attn.bias", "attention.causal_mask"), ("mlp.c_fc", "ffn.up"),
           ("mlp.c_proj", "ffn.down"), ("transformer.wte", "tok_emb"), ("transformer.wpe", "pos_emb"),
           ("transformer.ln_f", "final_norm"), ("lm_head", "head")]
MATCH = {"tok_emb.weight": "wte.embedding", "pos_emb.weight": "wpe.embedding", "head.weight": "lm_head.embed.embedding",
         "attention.causal_mask": ".attn.bias", "final_norm.weight": "ln_f.weight", "final_norm.bias": "ln_f.bias"}
for ours, theirs in [("norm_a", "ln_1"), ("norm_b", "ln_2")]:
    MATCH.update({f"{ours}.weight": f"{theirs}.weight", f"{ours}.bias": f"{theirs}.bias"})
for ours, theirs in [("attention.qkv", "attn.c_attn"), ("attention.out", "attn.c_proj"), ("ffn.up", "mlp.c_fc"),
                     ("ffn.down", "mlp.c_proj")]:
    MATCH.update({f"{ours}.weight": f"{theirs}.kernel", f"{ours}.bias": f"{theirs}.bias"})


def test_match_dict_maps_foreign_names_with_indices_in_order(tmp_path):
    gpt = Case("gpt.py", "gpt_tiny", {}, [((2, 8), "int:50")])
    pair = build_pair(gpt)
    (tmp_path / "gpt_flax.py").write_text(pair.conversion.code)
    foreign = {}
    for key, value in pair.torch_model.state_dict().items():
        for old, new in RENAMES:
            key = key.replace(old, new)
        foreign[key] = value
    torch.save(foreign, tmp_path / "foreign.pt")
    (tmp_path / "match.json").write_text(json.dumps(MATCH))
    out = tmp_path / "out.safetensors"
    assert main(["weights", str(tmp_path / "foreign.pt"), "-o", str(out), "--model",
                 f"{tmp_path / 'gpt_flax.py'}:gpt_tiny", "--match-dict", str(tmp_path / "match.json"),
                 "--verify", "-q"]) == 0
    module = import_source(pair.conversion.code, "ck_gpt_match")
    model = load_converted(out, module.gpt_tiny(rngs=nnx.Rngs(0)))
    model.eval()
    pair.torch_model.eval()
    x = make_inputs(gpt)
    with torch.no_grad():
        expected = flatten_outputs(run_torch(pair.torch_model, x))[0]
    np.testing.assert_allclose(flatten_outputs(run_flax(model, x))[0], expected, rtol=1e-4, atol=1e-4)


def test_match_dict_reports_ambiguous_and_unmatched_keys(setup):
    from retarget.weights.matching import match_keys
    from retarget.weights.port import plan
    _, module, _ = setup
    entries = plan(abstract_model(_factory(module)))[0]
    with pytest.raises(CheckpointError) as info:
        match_keys(["fc.weight", "fc.bias", "mystery.weight", "layer1.0.conv1.weight"],
                   entries, {"fc.": "fc.", "conv1": "conv1.kernel", "layer1.0.conv1": "conv1.kernel"})
    message = str(info.value)
    assert "mystery.weight: no match-dict entry" in message
    assert "layer1.0.conv1.weight: ambiguous, matched by ['conv1', 'layer1.0.conv1']" not in message  # longest wins
    assert "fc.weight: 2 model variable(s) contain 'fc.'" in message


def test_sharded_output_with_index_and_dtype_cast_on_request(setup, tmp_path):
    pair, module, tmp = setup
    torch.save(pair.torch_model.state_dict(), tmp_path / "rn.pt")
    out = tmp_path / "model.safetensors"
    assert main(["weights", str(tmp_path / "rn.pt"), "-o", str(out), "--model", f"{tmp / 'model_flax.py'}:resnet_tiny",
                 "--max-shard-size", "0.00002", "--dtype", "bfloat16", "--verify", "-q"]) == 0
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2 and all((tmp_path / s).exists() for s in shards) and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staged leftovers
    source = open_checkpoint(tmp_path / "model.safetensors.index.json")
    dtypes = {str(source.infos[k][0]) for k in source.keys()}
    assert dtypes == {"bfloat16", "int64"}  # floats cast on request, counters untouched
    model = load_converted(tmp_path / "model.safetensors.index.json", _factory(module)())
    pair.torch_model.eval()
    model.eval()
    inputs = make_inputs(CASE)
    with torch.no_grad():
        expected = flatten_outputs(run_torch(pair.torch_model, inputs))[0]
    np.testing.assert_allclose(flatten_outputs(run_flax(model, inputs))[0], expected, rtol=0.1, atol=0.1)


def test_orbax_output_restores_with_orbax_and_goes_back_to_torch(setup, tmp_path):
    import orbax.checkpoint as ocp
    pair, module, tmp = setup
    torch.save(pair.torch_model.state_dict(), tmp_path / "rn.pt")
    model_spec = f"{tmp / 'model_flax.py'}:resnet_tiny"
    assert main(["weights", str(tmp_path / "rn.pt"), "-o", str(tmp_path / "ckpt"), "--model", model_spec,
                 "--format", "orbax", "-q"]) == 0
    graphdef, abstract_state = nnx.split(nnx.eval_shape(_factory(module)))
    restored = ocp.StandardCheckpointer().restore((tmp_path / "ckpt" / "state").absolute(), abstract_state)
    _assert_outputs_match(pair, nnx.merge(graphdef, restored))
    assert main(["weights", str(tmp_path / "ckpt"), "-o", str(tmp_path / "back.safetensors"), "--model", model_spec,
                 "--to", "torch", "-q"]) == 0
    from safetensors.torch import load_file
    back, original = load_file(tmp_path / "back.safetensors"), pair.torch_model.state_dict()
    assert set(back) == set(original) and all(torch.equal(back[k], original[k]) for k in original)




def test_key_map_with_explicit_transforms(setup, tmp_path):
    pair, module, tmp = setup
    sd = {k: v.numpy() for k, v in pair.torch_model.state_dict().items()}
    entries = {e.source: e for e in plan(abstract_model(_factory(module)))[0]}
    # the same weights under a foreign layout: fc stored as (in, out)^T, the stem kernel flattened
    foreign = {"fused_fc": sd["fc.weight"], "fc_bias": sd["fc.bias"], "stem_flat": sd["conv1.weight"].reshape(-1)}
    lines = ["[[map]]\nfrom = \"fused_fc\"\nto = \"fc.kernel\"\ntransform = [\"transpose\"]\n",
             "[[map]]\nfrom = \"fc_bias\"\nto = \"fc.bias\"\n",
             "[[map]]\nfrom = \"stem_flat\"\nto = \"conv1.kernel\"\ntransform = [\"reshape:8,3,7,7\"]\n"]
    for key, value in sd.items():
        if key in ("fc.weight", "fc.bias", "conv1.weight"):
            continue
        name = key.replace(".", "__")
        foreign[name] = value
        lines.append(f"[[map]]\nfrom = \"{name}\"\nto = \"{entries[key].target}\"\n"
                     + ("transform = [\"transpose\"]\n" if entries[key].transform.name == "transpose" else ""))
    np.savez(tmp_path / "foreign.npz", **foreign)
    (tmp_path / "map.toml").write_text("\n".join(lines))
    out = tmp_path / "out.safetensors"
    assert main(["weights", str(tmp_path / "foreign.npz"), "-o", str(out), "--model",
                 f"{tmp / 'model_flax.py'}:resnet_tiny", "--key-map", str(tmp_path / "map.toml"), "--verify",
                 "-q"]) == 0
    _assert_outputs_match(pair, load_converted(out, _factory(module)()))


def test_key_map_split_concat_and_shape_errors():
    from retarget.weights.keymap import ShapeOnly, apply_steps, plan_jobs
    qkv = np.arange(24, dtype=np.float32).reshape(6, 4)
    q, k, v = apply_steps([qkv], ("split:0:3", "transpose"))
    np.testing.assert_array_equal(k, qkv[2:4].T)
    joined = apply_steps([q, k, v], ("concat:1",))[0]
    assert joined.shape == (4, 6)
    assert apply_steps([ShapeOnly(np.float32, (6, 4))], ("split:0:3", "transpose"))[0].shape == (4, 2)
    with pytest.raises(CheckpointError, match="does not divide"):
        apply_steps([ShapeOnly(np.float32, (5, 4))], ("split:0:3",))
    jobs = plan_jobs(["enc.0.qkv", "enc.1.qkv"], [{"from": "enc.{i}.qkv", "to": ["q.{i}", "k.{i}", "v.{i}"],
                                                     "transform": ["split:0:3"]}])
    assert [j.targets for j in jobs] == [("q.0", "k.0", "v.0"), ("q.1", "k.1", "v.1")]
    with pytest.raises(CheckpointError, match="no map entry uses"):
        plan_jobs(["enc.0.qkv", "other"], [{"from": "enc.{i}.qkv", "to": "x.{i}"}])


def test_legacy_torch_save_format(setup, tmp_path):
    pair, module, _ = setup
    sd = pair.torch_model.state_dict()
    torch.save({"state_dict": sd, "epoch": 1}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    out = tmp_path / "out.safetensors"
    report = convert_weights(open_checkpoint(tmp_path / "legacy.pth"), abstract_model(_factory(module)), out,
                             verify=True)
    assert report.verified
    _assert_outputs_match(pair, load_converted(out, _factory(module)()))
    data = (tmp_path / "legacy.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated"):
        open_checkpoint(tmp_path / "cut.pth")


def test_flax_msgpack_checkpoint_back_to_torch(setup, tmp_path):
    from flax import serialization
    pair, module, tmp = setup
    model = module.resnet_tiny(rngs=nnx.Rngs(0))
    retarget.port_weights(pair.torch_model.state_dict(), model)
    state = nnx.state(model)
    (tmp_path / "model.msgpack").write_bytes(serialization.to_bytes(state.to_pure_dict()))
    back = tmp_path / "back.safetensors"
    assert main(["weights", str(tmp_path / "model.msgpack"), "-o", str(back), "--model",
                 f"{tmp / 'model_flax.py'}:resnet_tiny", "--to", "torch", "-q"]) == 0
    from safetensors.torch import load_file
    restored, original = load_file(back), pair.torch_model.state_dict()
    assert set(restored) == set(original)
    for key in original:  # counters were int64 in torch, int32 in the JAX model: values equal
        assert torch.equal(restored[key].to(original[key].dtype), original[key]), key


def test_back_to_a_torch_save_file_that_torch_loads_with_weights_only(tmp_path):
    gpt = Case("gpt.py", "gpt_tiny", {}, [((2, 8), "int:50")])
    pair = build_pair(gpt)
    (tmp_path / "gpt_flax.py").write_text(pair.conversion.code)
    sd = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in pair.torch_model.state_dict().items()}
    torch.save(sd, tmp_path / "gpt.pt")
    spec = f"{tmp_path / 'gpt_flax.py'}:gpt_tiny"
    assert main(["weights", str(tmp_path / "gpt.pt"), "-o", str(tmp_path / "flax.safetensors"), "--model", spec,
                 "-q"]) == 0
    assert main(["weights", str(tmp_path / "flax.safetensors"), "-o", str(tmp_path / "back.pt"), "--model", spec,
                 "--to", "torch", "-q"]) == 0
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert list(back) == list(sd)  # torch's key order; the tied lm_head weight is written again, as torch does
    for key in sd:
        assert back[key].dtype == sd[key].dtype and torch.equal(back[key], sd[key]), key
    pair.torch_model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in back.items()})


def test_torch_save_in_converted_scripts_writes_what_torch_loads(tmp_path):
    """support's `write_torch` (torch.save in converted scripts): torch's zip format, read by
    `torch.load(weights_only=True)` with every value and dtype, 0-d tensors kept 0-d; objects that are
    not data are refused with a clear error, and nothing is left behind."""
    import ml_dtypes
    import torch
    from retarget.support.torch_checkpoint import write_torch
    value = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "steps": np.zeros((), np.int64),
             "half": np.ones(3, ml_dtypes.bfloat16), "mask": np.array([True, False]),
             "meta": {"epoch": 3, "lr": 0.5, "name": "run", "none": None, "sizes": [1, 2], "pair": (4, 5)}, 0: {}}
    write_torch(value, tmp_path / "x.pt")
    loaded = torch.load(tmp_path / "x.pt", weights_only=True)
    assert loaded["w"].tolist() == [[0, 1, 2], [3, 4, 5]] and loaded["w"].dtype == torch.float32
    assert loaded["steps"].shape == () and loaded["steps"].dtype == torch.int64
    assert loaded["half"].dtype == torch.bfloat16 and loaded["mask"].tolist() == [True, False]
    assert loaded["meta"] == value["meta"] and loaded[0] == {}
    with pytest.raises(TypeError, match="cannot write a value of type object"):
        write_torch({"bad": object()}, tmp_path / "y.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]
