"""What converted Hugging Face transformers modeling files use of the library's runtime, in JAX/NNX.

A modeling file imports its base classes, decorators, masks, caches and output classes from
transformers' runtime modules (`modeling_utils`, `masking_utils`, `cache_utils`, ...), all of which
are torch code. `rules/transformers.toml` maps each name a converted file uses to the definition of
the same name here, which the output's support module carries like any other helper. Each one
computes what transformers' computes for the eager attention path; what is not here yet is a rule-less
name (RT101) or raises NotImplementedError naming the feature, never a silent approximation.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import logging as _logging
import typing
import warnings

import jax
import jax.numpy as jnp
from flax import nnx


def gelu_tanh(x):
    """transformers' `gelu_new` / `gelu_pytorch_tanh` / `gelu_fast`: the tanh approximation."""
    return jax.nn.gelu(x, approximate=True)


def gelu_exact(x):
    return jax.nn.gelu(x, approximate=False)


def quick_gelu(x):
    return x * jax.nn.sigmoid(1.702 * x)


def relu_squared(x):
    return jnp.square(jax.nn.relu(x))


def gelu_clipped(x):
    """transformers' `gelu_10`: exact GELU clipped to [-10, 10]."""
    return jnp.clip(gelu_exact(x), -10.0, 10.0)


ACT2FN = {"gelu": gelu_exact, "gelu_python": gelu_exact, "gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh,
          "gelu_python_tanh": gelu_tanh, "gelu_fast": gelu_tanh, "gelu_accurate": gelu_tanh, "gelu_10": gelu_clipped,
          "quick_gelu": quick_gelu, "relu": jax.nn.relu, "relu2": relu_squared, "relu6": jax.nn.relu6,
          "silu": jax.nn.silu, "swish": jax.nn.silu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh,
          "hardswish": jax.nn.hard_swish, "leaky_relu": jax.nn.leaky_relu, "mish": jax.nn.mish,
          "linear": lambda x: x, "sqrtsoftplus": lambda x: jnp.sqrt(jax.nn.softplus(x))}


def get_activation(name):
    """transformers.activations.get_activation: the function ACT2FN holds under `name`."""
    return ACT2FN[name]


class TransformersKwargs(typing.TypedDict, total=False):
    """transformers' keyword arguments passed down through a model's layers (typing only)."""


def auto_docstring(obj=None, **kwargs):
    """transformers' docstring decorator, with or without arguments: the object unchanged."""
    return obj if obj is not None else (lambda inner: inner)


def use_kernel_forward_from_hub(name):
    """Hub kernels replace a layer's forward in torch; the layer's own code runs here."""
    return lambda cls: cls


def use_kernelized_func(*funcs):
    return lambda cls: cls


def use_experts_implementation(experts_class=None, **options):
    """Mixture-of-experts kernels replace the experts' forward in torch (`config._experts_implementation`);
    the class's own (eager) forward runs here."""
    return experts_class if experts_class is not None else (lambda cls: cls)


def deprecate_kwarg(old_name, version=None, new_name=None, **kwargs):
    """A keyword argument's old name is accepted as its new one (`past_key_values` -> `cache`)."""
    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kw):
            if old_name in kw and new_name is not None and new_name not in kw:
                kw[new_name] = kw.pop(old_name)
            return func(*args, **kw)
        return wrapper
    return decorator


def merge_with_config_defaults(func):
    """`use_cache=None` takes the config's value, as transformers' decorator does."""
    names = list(inspect.signature(func).parameters)

    @functools.wraps(func)
    def wrapper(self, *args, **kwargs):
        index = names.index("use_cache") - 1 if "use_cache" in names else None
        if index is not None and len(args) > index:
            return func(self, *args, **kwargs)
        if index is not None and kwargs.get("use_cache") is None:
            kwargs["use_cache"] = getattr(self.config, "use_cache", None)
        return func(self, *args, **kwargs)
    return wrapper


def capture_outputs(func=None, **options):
    """Collecting every layer's hidden states or attentions (`output_hidden_states=True`) is not
    converted yet: asked for, it raises; otherwise the forward runs as written."""
    def decorator(inner):
        @functools.wraps(inner)
        def wrapper(self, *args, **kwargs):
            for flag in ("output_hidden_states", "output_attentions"):
                if kwargs.pop(flag, None) or getattr(self.config, flag, False):
                    raise NotImplementedError(f"{flag}=True is not supported by the converted model yet")
            return inner(self, *args, **kwargs)
        return wrapper
    return decorator(func) if func is not None else decorator


def can_return_tuple(func):
    """`return_dict=False` (or the config's `return_dict=False`): the output as a tuple without Nones."""
    @functools.wraps(func)
    def wrapper(self, *args, return_dict=None, **kwargs):
        output = func(self, *args, **kwargs)
        if return_dict is None:
            return_dict = getattr(getattr(self, "config", None), "return_dict", True)
        return output if return_dict or isinstance(output, tuple) else output.to_tuple()
    return wrapper


def get_logger(name=None):
    """transformers.utils.logging.get_logger: Python's logger of that name."""
    return _logging.getLogger(name)


class ModelOutput:
    """transformers' ModelOutput: a dataclass whose fields read by name, by key and (skipping the
    None ones) by index; a JAX pytree, so jitted models return it."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])

    def to_tuple(self):
        return tuple(v for v in self.values())

    def keys(self):
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def values(self):
        return [getattr(self, k) for k in self.keys()]

    def items(self):
        return list(zip(self.keys(), self.values()))

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else self.to_tuple()[key]


def model_output(name, fields):
    """One of transformers' output dataclasses (`modeling_outputs`): its fields in its order, each None
    by default; `past_key_values` is also read as `cache`, its name after transformers 5.22."""
    fields = fields.split()
    if "past_key_values" in fields:
        fields.insert(fields.index("past_key_values") + 1, "cache")
    namespace = {"__annotations__": dict.fromkeys(fields, typing.Any), **dict.fromkeys(fields)}
    return type(name, (ModelOutput,), {"__module__": __name__, **namespace})


BaseModelOutput = model_output("BaseModelOutput", "last_hidden_state hidden_states attentions")
BaseModelOutputWithNoAttention = model_output("BaseModelOutputWithNoAttention", "last_hidden_state hidden_states")
BaseModelOutputWithPooling = model_output(
    "BaseModelOutputWithPooling", "last_hidden_state pooler_output hidden_states attentions")
BaseModelOutputWithPoolingAndNoAttention = model_output(
    "BaseModelOutputWithPoolingAndNoAttention", "last_hidden_state pooler_output hidden_states")
BaseModelOutputWithPast = model_output(
    "BaseModelOutputWithPast", "last_hidden_state past_key_values hidden_states attentions")
BaseModelOutputWithCrossAttentions = model_output(
    "BaseModelOutputWithCrossAttentions", "last_hidden_state hidden_states attentions cross_attentions")
BaseModelOutputWithPoolingAndCrossAttentions = model_output(
    "BaseModelOutputWithPoolingAndCrossAttentions", "last_hidden_state pooler_output hidden_states "
    "past_key_values attentions cross_attentions")
BaseModelOutputWithPastAndCrossAttentions = model_output(
    "BaseModelOutputWithPastAndCrossAttentions", "last_hidden_state past_key_values hidden_states attentions "
    "cross_attentions")
MoEModelOutput = model_output(
    "MoEModelOutput", "last_hidden_state hidden_states attentions router_probs router_logits")
MoeModelOutputWithPast = model_output(
    "MoeModelOutputWithPast", "last_hidden_state past_key_values hidden_states attentions router_logits")
MoeCausalLMOutputWithPast = model_output(
    "MoeCausalLMOutputWithPast", "loss aux_loss logits past_key_values hidden_states attentions router_logits")
MoEModelOutputWithPastAndCrossAttentions = model_output(
    "MoEModelOutputWithPastAndCrossAttentions", "last_hidden_state past_key_values hidden_states attentions "
    "cross_attentions router_probs router_logits")
Seq2SeqModelOutput = model_output(
    "Seq2SeqModelOutput", "last_hidden_state past_key_values decoder_hidden_states decoder_attentions "
    "cross_attentions encoder_last_hidden_state encoder_hidden_states encoder_attentions")
Seq2SeqMoEModelOutput = model_output(
    "Seq2SeqMoEModelOutput", "last_hidden_state past_key_values decoder_hidden_states decoder_attentions "
    "decoder_router_logits cross_attentions encoder_last_hidden_state encoder_hidden_states encoder_attentions "
    "encoder_router_logits")
CausalLMOutput = model_output("CausalLMOutput", "loss logits hidden_states attentions")
CausalLMOutputWithPast = model_output(
    "CausalLMOutputWithPast", "loss logits past_key_values hidden_states attentions")
CausalLMOutputWithCrossAttentions = model_output(
    "CausalLMOutputWithCrossAttentions", "loss logits past_key_values hidden_states attentions cross_attentions")
SequenceClassifierOutputWithPast = model_output(
    "SequenceClassifierOutputWithPast", "loss logits past_key_values hidden_states attentions")
MaskedLMOutput = model_output("MaskedLMOutput", "loss logits hidden_states attentions")
Seq2SeqLMOutput = model_output(
    "Seq2SeqLMOutput", "loss logits past_key_values decoder_hidden_states decoder_attentions cross_attentions "
    "encoder_last_hidden_state encoder_hidden_states encoder_attentions")
Seq2SeqMoEOutput = model_output(
    "Seq2SeqMoEOutput", "loss logits encoder_z_loss decoder_z_loss encoder_aux_loss decoder_aux_loss "
    "past_key_values decoder_hidden_states decoder_attentions decoder_router_logits cross_attentions "
    "encoder_last_hidden_state encoder_hidden_states encoder_attentions encoder_router_logits")
NextSentencePredictorOutput = model_output("NextSentencePredictorOutput", "loss logits hidden_states attentions")
SequenceClassifierOutput = model_output("SequenceClassifierOutput", "loss logits hidden_states attentions")
Seq2SeqSequenceClassifierOutput = model_output(
    "Seq2SeqSequenceClassifierOutput", "loss logits past_key_values decoder_hidden_states decoder_attentions "
    "cross_attentions encoder_last_hidden_state encoder_hidden_states encoder_attentions")
MultipleChoiceModelOutput = model_output("MultipleChoiceModelOutput", "loss logits hidden_states attentions")
TokenClassifierOutput = model_output("TokenClassifierOutput", "loss logits hidden_states attentions")
QuestionAnsweringModelOutput = model_output(
    "QuestionAnsweringModelOutput", "loss start_logits end_logits hidden_states attentions")
Seq2SeqQuestionAnsweringModelOutput = model_output(
    "Seq2SeqQuestionAnsweringModelOutput", "loss start_logits end_logits past_key_values decoder_hidden_states "
    "decoder_attentions cross_attentions encoder_last_hidden_state encoder_hidden_states encoder_attentions")
SemanticSegmenterOutput = model_output("SemanticSegmenterOutput", "loss logits hidden_states attentions")
ImageClassifierOutput = model_output("ImageClassifierOutput", "loss logits hidden_states attentions")
ImageClassifierOutputWithNoAttention = model_output(
    "ImageClassifierOutputWithNoAttention", "loss logits hidden_states")
DepthEstimatorOutput = model_output("DepthEstimatorOutput", "loss predicted_depth hidden_states attentions")
ImageSuperResolutionOutput = model_output(
    "ImageSuperResolutionOutput", "loss reconstruction hidden_states attentions")
Wav2Vec2BaseModelOutput = model_output(
    "Wav2Vec2BaseModelOutput", "last_hidden_state extract_features hidden_states attentions")
XVectorOutput = model_output("XVectorOutput", "loss logits embeddings hidden_states attentions")
BackboneOutput = model_output("BackboneOutput", "feature_maps hidden_states attentions")
BaseModelOutputWithPoolingAndProjection = model_output(
    "BaseModelOutputWithPoolingAndProjection", "last_hidden_state pooler_output hidden_states attentions "
    "projection_state")
Seq2SeqSpectrogramOutput = model_output(
    "Seq2SeqSpectrogramOutput", "loss spectrogram past_key_values decoder_hidden_states decoder_attentions "
    "cross_attentions encoder_last_hidden_state encoder_hidden_states encoder_attentions")
Seq2SeqTSModelOutput = model_output(
    "Seq2SeqTSModelOutput", "last_hidden_state past_key_values decoder_hidden_states decoder_attentions "
    "cross_attentions encoder_last_hidden_state encoder_hidden_states encoder_attentions loc scale "
    "static_features")
Seq2SeqTSPredictionOutput = model_output(
    "Seq2SeqTSPredictionOutput", "loss params past_key_values decoder_hidden_states decoder_attentions "
    "cross_attentions encoder_last_hidden_state encoder_hidden_states encoder_attentions loc scale "
    "static_features")
SampleTSPredictionOutput = model_output("SampleTSPredictionOutput", "sequences")
MaskedImageModelingOutput = model_output(
    "MaskedImageModelingOutput", "loss reconstruction hidden_states attentions")
MoECausalLMOutputWithPast = model_output(
    "MoECausalLMOutputWithPast", "loss aux_loss logits past_key_values hidden_states attentions router_logits")


class Cache:
    """transformers' cache base class (a type for annotations and isinstance checks)."""

    @property
    def layers(self):
        """Per layer, its keys and values (`cache.layers[i].keys`), as transformers' cache layers."""
        return [CacheLayer(k, v) for k, v in zip(self.keys, self.values)]


@jax.tree_util.register_pytree_node_class
class DynamicCache(Cache):
    """Keys and values of every layer so far, grown along the sequence axis by `update` (eagerly;
    under jit each step's cache is a new pytree, as JAX arrays are)."""

    def __init__(self, config=None, keys=None, values=None, **kwargs):
        self.keys, self.values = list(keys or []), list(values or [])

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if layer_idx < len(self.keys):
            self.keys[layer_idx] = jnp.concatenate([self.keys[layer_idx], key_states], axis=-2)
            self.values[layer_idx] = jnp.concatenate([self.values[layer_idx], value_states], axis=-2)
        else:
            self.keys.append(key_states)
            self.values.append(value_states)
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx=0):
        return self.keys[layer_idx].shape[-2] if layer_idx < len(self.keys) else 0

    def tree_flatten(self):
        return (self.keys, self.values), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(keys=children[0], values=children[1])



@jax.tree_util.register_pytree_node_class
class StaticCache(Cache):
    """Keys and values in buffers of a fixed length (`max_cache_len`), each layer writing its new
    positions after those it holds: the arrays keep their shapes from step to step, so a jitted
    decoding step compiles once. Masks cover the whole buffer; slots not written yet lie in the
    future of every query, so causality masks them."""

    def __init__(self, config=None, max_cache_len=None, keys=None, values=None, lengths=None, **kwargs):
        self.max_cache_len = max_cache_len
        self.keys, self.values, self.lengths = list(keys or []), list(values or []), list(lengths or [])

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if layer_idx == len(self.keys):
            shape = (*key_states.shape[:-2], self.max_cache_len, key_states.shape[-1])
            self.keys.append(jnp.zeros(shape, key_states.dtype))
            self.values.append(jnp.zeros((*shape[:-1], value_states.shape[-1]), value_states.dtype))
            self.lengths.append(jnp.zeros((), jnp.int32))
        at = self.lengths[layer_idx]
        self.keys[layer_idx] = jax.lax.dynamic_update_slice_in_dim(self.keys[layer_idx], key_states, at, axis=-2)
        self.values[layer_idx] = jax.lax.dynamic_update_slice_in_dim(self.values[layer_idx], value_states, at, axis=-2)
        self.lengths[layer_idx] = at + key_states.shape[-2]
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx=0):
        return self.lengths[layer_idx] if layer_idx < len(self.lengths) else 0

    def tree_flatten(self):
        return (self.keys, self.values, self.lengths), self.max_cache_len

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(max_cache_len=aux, keys=children[0], values=children[1], lengths=children[2])


class CacheLayer(typing.NamedTuple):
    keys: typing.Any
    values: typing.Any


@jax.tree_util.register_pytree_node_class
class EncoderDecoderCache(Cache):
    """The decoder's self-attention cache and its cross-attention cache (the encoder's keys and values,
    computed once: `is_updated[layer]` says a layer has them)."""

    def __init__(self, self_attention_cache, cross_attention_cache, is_updated=None):
        self.self_attention_cache, self.cross_attention_cache = self_attention_cache, cross_attention_cache
        self.is_updated = dict(is_updated) if is_updated is not None else {
            i: cross_attention_cache.get_seq_length(i) > 0 for i in range(len(cross_attention_cache.keys))}

    def get_seq_length(self, layer_idx=0):
        return self.self_attention_cache.get_seq_length(layer_idx)

    def tree_flatten(self):
        return (self.self_attention_cache, self.cross_attention_cache), tuple(sorted(self.is_updated.items()))

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children, is_updated=dict(aux))


def create_causal_mask(config, inputs_embeds, attention_mask, cache=None, position_ids=None, **kwargs):
    """The additive (batch, 1, query, key) mask of transformers' eager attention: 0 where a query may
    see a key (not later than itself, not padding), the dtype's minimum elsewhere."""
    return _additive_mask(inputs_embeds, attention_mask, cache, None, kwargs)


def create_sliding_window_causal_mask(config, inputs_embeds, attention_mask, cache=None, position_ids=None,
                                      **kwargs):
    """As `create_causal_mask`, a query seeing only the `config.sliding_window` latest keys."""
    return _additive_mask(inputs_embeds, attention_mask, cache, config.sliding_window, kwargs)


def create_bidirectional_mask(config, inputs_embeds, attention_mask, encoder_hidden_states=None, **kwargs):
    """The additive mask of non-causal attention (encoders, cross-attention over
    `encoder_hidden_states`): padding keys masked; None without a padding mask, as nothing is."""
    if kwargs.get("or_mask_function") is not None or kwargs.get("and_mask_function") is not None:
        raise NotImplementedError("bidirectional masks with mask functions are not converted yet")
    if attention_mask is None:
        return None
    length = inputs_embeds.shape[1]
    allowed = jnp.broadcast_to(attention_mask[:, None, None, :].astype(bool),
                               (attention_mask.shape[0], 1, length, attention_mask.shape[-1]))
    return jnp.where(allowed, 0.0, jnp.finfo(inputs_embeds.dtype).min).astype(inputs_embeds.dtype)


def _additive_mask(inputs_embeds, attention_mask, cache, window, kwargs):
    unsupported = [k for k in ("or_mask_function", "and_mask_function", "block_sequence_ids")
                   if kwargs.get(k) is not None]
    if unsupported:
        raise NotImplementedError(f"attention masks with {unsupported} are not converted yet")
    cache = cache if cache is not None else kwargs.get("past_key_values")  # its name until transformers 5.22
    batch, length = inputs_embeds.shape[:2]
    past = cache.get_seq_length() if cache is not None else 0
    width = getattr(cache, "max_cache_len", None) or past + length  # a static cache: its whole buffer
    query, key = past + jnp.arange(length)[:, None], jnp.arange(width)[None, :]
    allowed = key <= query if window is None else (key <= query) & (query - key < window)
    allowed = jnp.broadcast_to(allowed[None, None], (batch, 1, length, width))
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :width].astype(bool)
    return jnp.where(allowed, 0.0, jnp.finfo(inputs_embeds.dtype).min).astype(inputs_embeds.dtype)


class Conv1D(nnx.Linear):
    """transformers' Conv1D (GPT-2): a linear layer whose torch weight is already (in, out), as the
    kernel here; weight normal(0, 0.02) and bias zero at the start, as transformers initialises it."""

    def __init__(self, nf, nx, *, rngs: nnx.Rngs):
        super().__init__(nx, nf, kernel_init=nnx.initializers.normal(0.02), rngs=rngs)
        self.nf, self.nx = nf, nx


class _AttentionFunctions(dict):
    """transformers' attention registry: every implementation name runs the modeling file's eager
    attention here (sdpa and flash attention compute the same values)."""

    def get_interface(self, name, default):
        return default


ALL_ATTENTION_FUNCTIONS = _AttentionFunctions()
ROPE_INIT_FUNCTIONS = {}  # only the default rope (the modeling file's own) is converted yet


def dynamic_rope_update(func):
    """Dynamic rope types update the frequencies at run time; the default type never does."""
    return func


def slice_logits_to_keep(hidden_states, logits_to_keep):
    """The positions whose logits are computed: the last `logits_to_keep` (0: all), or given indices."""
    if isinstance(logits_to_keep, int):
        return hidden_states[:, -logits_to_keep:, :] if logits_to_keep else hidden_states
    return hidden_states[:, logits_to_keep, :]


def _cross_entropy_for_causal_lm(logits, labels, vocab_size=None, ignore_index=-100, **kwargs):
    """transformers' ForCausalLMLoss: next-token cross-entropy in float32, labels of -100 ignored."""
    logits = logits[:, :-1, :].astype(jnp.float32)
    labels = labels[:, 1:]
    keep = labels != ignore_index
    safe = jnp.where(keep, labels, 0)
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), safe[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(keep, losses, 0.0)) / jnp.maximum(jnp.sum(keep), 1)


class PreTrainedModel(nnx.Module):
    """transformers' PreTrainedModel as an NNX module: it keeps the config; weights come from the
    layers' own (torch-like) initialisers, or from a checkpoint through `retarget.port_weights`."""
    base_model_prefix = ""
    config = None

    def __init__(self, config, *inputs, rngs=None, **kwargs):
        self.config = config

    @classmethod
    def _from_config(cls, config, *, rngs, torch_dtype=None, dtype=None, **kwargs):
        """A model of this class built from `config` (a sub-model of a composite model, as CLIP's)."""
        if (torch_dtype or dtype) is not None or kwargs:
            raise NotImplementedError(f"_from_config with dtype or {sorted(kwargs)} is not converted yet")
        return cls(config, rngs=rngs)

    def post_init(self):
        """torch's post_init re-initialises weights with `config.initializer_range`; the converted
        layers start from torch's default initialisers (port a checkpoint for trained weights). Weights
        transformers ties (`_tied_weights_keys`: the output projection and the input embeddings) are
        separate variables here: equal once a checkpoint is loaded, but training moves them apart."""
        tied = getattr(type(self), "_tied_weights_keys", None)
        if tied and getattr(self.config, "tie_word_embeddings", False):
            warnings.warn(f"{type(self).__name__}: tied weights {sorted(tied)} are separate variables in the "
                          "converted model; training updates them independently", stacklevel=2)

    @property
    def dtype(self):
        """The dtype of the model's floating-point parameters (torch: `model.dtype`)."""
        floats = [v.dtype for v in jax.tree.leaves(nnx.state(self, nnx.Param)) if jnp.issubdtype(v.dtype, jnp.floating)]
        return floats[0] if floats else jnp.float32

    def warn_if_padding_and_no_attention_mask(self, input_ids, attention_mask):
        """transformers only logs a warning here (padding tokens without a mask)."""

    @property
    def loss_function(self):
        return _cross_entropy_for_causal_lm

    def get_input_embeddings(self):
        return getattr(self, self.base_model_prefix, self).embed_tokens


def apply_chunking_to_forward(forward_fn, chunk_size, chunk_dim, *input_tensors):
    """`forward_fn` over chunks of `chunk_size` along `chunk_dim` (0: at once), the results concatenated."""
    if chunk_size == 0:
        return forward_fn(*input_tensors)
    count = input_tensors[0].shape[chunk_dim] // chunk_size
    chunks = zip(*(jnp.split(t, count, axis=chunk_dim) for t in input_tensors))
    return jnp.concatenate([forward_fn(*c) for c in chunks], axis=chunk_dim)


def torch_int(x):
    """transformers' torch_int: a Python int of `x` (an integer array when traced under jit)."""
    return x.astype(jnp.int32) if isinstance(x, jax.Array) else int(x)


def torch_compilable_check(cond, msg, error_type=ValueError):
    """Raise `error_type(msg)` when `cond` is false; under jit (a traced condition) the check is skipped,
    as torch.compile only takes it as a hint."""
    cond = cond() if callable(cond) else cond
    if isinstance(cond, jax.core.Tracer):
        return
    if not bool(cond):
        raise error_type(msg() if callable(msg) else msg)


class OutputRecorder:
    """What transformers records per layer when hidden states or attentions are asked for (see
    `capture_outputs`: not converted yet, so only kept)."""

    def __init__(self, target_class, index=0, layer_name=None, class_name=None, **options):
        self.target_class, self.index, self.layer_name, self.class_name = target_class, index, layer_name, class_name
        self.options = options


DUMMY_INPUTS = [[7, 6, 0, 0, 1], [1, 2, 3, 0, 0], [0, 0, 0, 4, 5]]
DUMMY_MASK = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 1, 1]]


class GradientCheckpointingLayer(nnx.Module):
    """A decoder layer (gradient checkpointing is `nnx.remat`'s job in JAX; not applied here)."""

    def __init__(self, *args, rngs=None, **kwargs):
        pass


class GenerationMixin:
    """transformers' `generate`, greedy decoding (`do_sample=False`, one beam): the prompt once, then one
    token per step against a key/value cache of fixed length (`StaticCache`), so the jitted step
    (`nnx.jit`) compiles twice in all: for the prompt and for one token. Positions and the padding mask
    follow transformers' (left padding counts from each row's first token); rows that emitted an end
    token continue with the pad token."""

    def generate(self, input_ids, attention_mask=None, max_new_tokens=20, do_sample=False, num_beams=1,
                 eos_token_id=None, pad_token_id=None, **kwargs):
        if do_sample or num_beams != 1 or kwargs:
            raise NotImplementedError(f"generate() converts greedy decoding only (got do_sample={do_sample}, "
                                      f"num_beams={num_beams}, {sorted(kwargs)})")
        prompt = jnp.ones_like(input_ids) if attention_mask is None else jnp.asarray(attention_mask)
        ends = _token_set(self.config.eos_token_id if eos_token_id is None else eos_token_id)
        pad = _first_token(self.config.pad_token_id if pad_token_id is None else pad_token_id, ends)
        positions = jnp.where(prompt == 0, 0, jnp.cumsum(prompt, axis=-1) - 1)
        mask = jnp.concatenate([prompt, jnp.ones((prompt.shape[0], max_new_tokens), prompt.dtype)], axis=-1)
        step = nnx.jit(_greedy_step)
        tokens, cache = input_ids, StaticCache(config=self.config, max_cache_len=mask.shape[-1])
        done = jnp.zeros(input_ids.shape[0], bool)
        sequences = input_ids
        for _ in range(max_new_tokens):
            token, cache = step(self, tokens, mask, positions, cache)
            token = jnp.where(done, pad, token) if pad is not None else token
            sequences = jnp.concatenate([sequences, token[:, None]], axis=-1)
            done = done | jnp.isin(token, jnp.asarray(ends or [-1]))
            if ends and bool(done.all()):
                break
            tokens, positions = token[:, None], positions[:, -1:] + 1
        return sequences


def _greedy_step(model, tokens, mask, positions, cache):
    out = model(input_ids=tokens, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
    cache = out.past_key_values if out.past_key_values is not None else out.cache
    return jnp.argmax(out.logits[:, -1, :], axis=-1), cache


def _token_set(value):
    return [] if value is None else [value] if isinstance(value, int) else list(value)


def _first_token(value, ends):
    return value if value is not None else (ends[0] if ends else None)


class _GenericHead(nnx.Module):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}: transformers' generic task heads are not converted yet")


class GenericForSequenceClassification(_GenericHead):
    pass


class GenericForQuestionAnswering(_GenericHead):
    pass


class GenericForTokenClassification(_GenericHead):
    pass
