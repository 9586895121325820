"""Shared op categories for jaxpr primitives and ATen ops, and the table of their counterparts.

`roadmap ir` counts the ops of both frameworks' graphs in the same six categories so that a
jaxpr and a torch.export / AOTAutograd graph can be set side by side. The maps cover the ops
the roadmap's models emit; anything unknown is classified by name rules (`*_backward` takes
its forward op's category, `reduce_*` is a reduction...) and falls back to control/other.
"""

from __future__ import annotations

MATMUL = "matmul/conv"
ELEMENTWISE = "elementwise"
REDUCTION = "reduction"
MOVEMENT = "data movement"
RANDOM = "random"
OTHER = "control/other"
CATEGORIES = (MATMUL, ELEMENTWISE, REDUCTION, MOVEMENT, RANDOM, OTHER)


def _cat(category: str, names: str) -> dict[str, str]:
    return dict.fromkeys(names.split(), category)


# jaxpr primitive name -> category.  Pooling (reduce_window_*) and its gradient count as
# reductions on both sides, so max_pool2d and reduce_window_max land in the same row.
JAX_PRIMITIVES: dict[str, str] = {
    **_cat(MATMUL, "dot_general conv_general_dilated ragged_dot_general"),
    **_cat(
        ELEMENTWISE,
        "add add_any sub mul div rem pow integer_pow max min neg sign floor ceil round "
        "is_finite exp exp2 log log1p expm1 tanh logistic sin cos tan asin acos atan atan2 "
        "sinh cosh asinh acosh atanh sqrt rsqrt cbrt square abs erf erfc erf_inv lgamma "
        "digamma select_n clamp convert_element_type eq ne lt le gt ge and or not xor "
        "shift_left shift_right_logical shift_right_arithmetic nextafter population_count "
        "clz real imag conj complex reduce_precision stop_gradient bitcast_convert_type",
    ),
    **_cat(
        REDUCTION,
        "reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor "
        "argmax argmin reduce_window_max reduce_window_min reduce_window_sum reduce_window "
        "select_and_scatter_add select_and_gather_add cumsum cumprod cummax cummin "
        "cumlogsumexp",
    ),
    **_cat(
        MOVEMENT,
        "transpose reshape broadcast_in_dim squeeze expand_dims slice dynamic_slice "
        "dynamic_update_slice gather scatter scatter-add scatter_add concatenate pad rev "
        "copy copy_p device_put split",
    ),
    **_cat(
        RANDOM,
        "random_bits random_seed random_wrap random_unwrap random_fold_in random_split "
        "threefry2x32 rng_bit_generator rng_uniform",
    ),
    **_cat(OTHER, "while cond scan iota sort top_k custom_linear_solve"),
}

# Higher-order jaxpr primitives that only wrap a sub-jaxpr: counting looks inside, not at them.
JAX_WRAPPERS = frozenset(
    "jit pjit closed_call core_call custom_jvp_call custom_vjp_call custom_vjp_call_jaxpr "
    "remat checkpoint custom_lin".split()
)

# ATen (and prims / inductor) op name, without namespace and overload -> category.
ATEN_OPS: dict[str, str] = {
    **_cat(
        MATMUL,
        "mm addmm bmm baddbmm matmul linear dot mv addmv einsum conv1d conv2d conv3d "
        "convolution _convolution convolution_backward mkldnn_convolution "
        "_scaled_dot_product_attention_math _scaled_dot_product_flash_attention "
        "_scaled_dot_product_flash_attention_for_cpu "
        "_scaled_dot_product_flash_attention_for_cpu_backward "
        "scaled_dot_product_attention _scaled_dot_product_efficient_attention",
    ),
    **_cat(
        ELEMENTWISE,
        "relu threshold threshold_backward add sub rsub mul div neg exp log log1p expm1 sqrt "
        "rsqrt pow tanh sigmoid gelu silu hardtanh leaky_relu where gt ge lt le eq ne clamp "
        "clamp_min clamp_max maximum minimum abs sign reciprocal lerp addcmul addcdiv fma "
        "convert_element_type _to_copy to sigmoid_backward tanh_backward gelu_backward "
        "silu_backward erf sin cos logical_not logical_and logical_or bitwise_and "
        "bitwise_or bitwise_not isnan isinf square masked_fill fill",
    ),
    **_cat(
        REDUCTION,
        "sum mean amax amin max min argmax argmin prod var std var_mean norm "
        "linalg_vector_norm logsumexp cumsum _log_softmax log_softmax _softmax softmax "
        "_log_softmax_backward_data _softmax_backward_data nll_loss_forward nll_loss "
        "cross_entropy_loss max_pool2d max_pool2d_with_indices "
        "max_pool2d_with_indices_backward _low_memory_max_pool_with_offsets "
        "_low_memory_max_pool_offsets_to_indices avg_pool2d avg_pool2d_backward "
        "adaptive_avg_pool2d _adaptive_avg_pool2d _adaptive_avg_pool2d_backward "
        "native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_functional "
        "_native_batch_norm_legit_no_training native_batch_norm_backward native_layer_norm "
        "native_layer_norm_backward batch_norm layer_norm",
    ),
    **_cat(
        MOVEMENT,
        "view _unsafe_view reshape _reshape_alias permute transpose t expand clone copy "
        "contiguous flatten unsqueeze squeeze slice select cat stack split split_with_sizes "
        "narrow gather scatter scatter_add index index_select index_put pad constant_pad_nd "
        "as_strided alias detach unbind repeat lift_fresh_copy roll flip "
        "nll_loss_backward slice_scatter select_scatter embedding embedding_dense_backward",
    ),
    **_cat(
        RANDOM,
        "dropout native_dropout bernoulli rand rand_like randn randn_like randint "
        "inductor_random inductor_seeds inductor_lookup_seed philox_rand",
    ),
    **_cat(
        OTHER,
        "full full_like zeros zeros_like ones ones_like empty empty_like empty_strided "
        "new_zeros new_ones new_empty scalar_tensor iota arange sym_size sym_numel "
        "_assert_async _assert_scalar _assert_tensor_metadata auto_functionalized "
        "with_effects cond while_loop item _local_scalar_dense",
    ),
}

# Common counterparts: (jaxpr primitives, ATen ops, what connects them).
CORRESPONDENCES: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (
        ("dot_general",),
        ("mm", "addmm", "bmm", "linear", "matmul"),
        "Dense/Linear; JAX adds the bias with a separate add, addmm fuses it",
    ),
    (
        ("conv_general_dilated",),
        ("convolution", "conv2d", "convolution_backward"),
        "one conv primitive; the gradients are convolutions too (JAX) or one backward op",
    ),
    (
        ("reduce_window_max",),
        ("max_pool2d", "max_pool2d_with_indices", "_low_memory_max_pool_with_offsets"),
        "max pooling: a windowed max reduction",
    ),
    (
        ("select_and_scatter_add",),
        ("max_pool2d_with_indices_backward",),
        "max-pool gradient: route the cotangent to the argmax of each window",
    ),
    (("reduce_max",), ("amax", "max"), "max over an axis (log-softmax stabilisation)"),
    (("reduce_sum",), ("sum", "mean"), "sums; JAX divides separately for a mean"),
    (("argmax",), ("argmax",), "predicted class"),
    (("max",), ("relu", "clamp_min", "maximum"), "ReLU is max(x, 0) in jax.nn"),
    (
        ("select_n",),
        ("where", "threshold_backward"),
        "selection; ReLU's gradient is a select on x > 0",
    ),
    (("add", "add_any"), ("add",), "add_any sums cotangents in the backward pass"),
    (("mul",), ("mul",), "products, scalings, dropout masks"),
    (("exp", "log"), ("exp", "log", "_log_softmax"), "log-softmax pieces"),
    (("sqrt", "rsqrt"), ("sqrt", "rsqrt"), "optimizer normalisers (Adam, Adadelta)"),
    (
        ("reshape",),
        ("view", "_unsafe_view", "reshape", "flatten"),
        "flatten before the classifier",
    ),
    (("transpose",), ("permute", "t", "transpose"), "layout changes, weight transposes"),
    (("broadcast_in_dim",), ("expand",), "broadcasting biases and scalars"),
    (
        ("random_bits", "threefry2x32", "random_fold_in"),
        ("native_dropout", "bernoulli", "rand", "inductor_random"),
        "dropout masks: counter-based threefry (JAX) vs a global generator (torch)",
    ),
    (("convert_element_type",), ("_to_copy", "convert_element_type"), "dtype casts"),
)


def _base_name(op: str) -> str:
    """`aten.relu_.default` / `prims::fma` / `relu_` -> the packet name (`relu_`, `fma`)."""
    parts = op.replace("::", ".").split(".")
    if len(parts) >= 2 and parts[0] in ("aten", "prims", "inductor", "torch", "ops", "quantized"):
        parts = parts[1:]
    return parts[0]  # what follows the packet name is the overload (default, Tensor, ...)


def jax_category(primitive: str) -> str:
    """The shared category of a jaxpr primitive name."""
    if primitive in JAX_PRIMITIVES:
        return JAX_PRIMITIVES[primitive]
    if primitive.startswith("reduce_window") or primitive.startswith("reduce_"):
        return REDUCTION
    if primitive.startswith(("random_", "rng_")) or "threefry" in primitive:
        return RANDOM
    if primitive.startswith(("scatter", "gather", "dynamic_")):
        return MOVEMENT
    if primitive.startswith("cum"):
        return REDUCTION
    return OTHER


def aten_category(op: str) -> str:
    """The shared category of an ATen/prims op (any of `aten.relu.default`, `relu_`, `relu`)."""
    name = _base_name(op)
    for candidate in (name, name.rstrip("_"), name.lstrip("_")):
        if candidate in ATEN_OPS:
            return ATEN_OPS[candidate]
    if name.startswith("_foreach_"):
        return REDUCTION if "norm" in name else ELEMENTWISE
    if name.endswith("_backward"):
        base = name[: -len("_backward")]
        return ATEN_OPS.get(base, aten_category(base) if base != name else OTHER)
    if "pool" in name or "norm" in name or "softmax" in name:
        return REDUCTION
    if "rand" in name or "dropout" in name or "philox" in name:
        return RANDOM
    if "conv" in name or name.endswith("mm"):
        return MATMUL
    return OTHER


def aten_name(op: str) -> str:
    """Short display name of an ATen/prims op: `aten.addmm.default` -> `addmm`."""
    return _base_name(op)


def count_categories(ops: dict[str, int], category_of) -> dict[str, int]:
    """Sum per-op counts into the shared categories (every category present, maybe 0)."""
    totals = dict.fromkeys(CATEGORIES, 0)
    for op, n in ops.items():
        totals[category_of(op)] += n
    return totals
