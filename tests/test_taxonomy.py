"""Kind and role from names across the naming schemes users meet."""

from __future__ import annotations

import pytest

from core.taxonomy import classify, layer_index

CASES = [
    # Llama / Mistral / Qwen / Gemma (Hugging Face)
    ("model.embed_tokens.weight", (32000, 64), "BF16", "embedding", "embedding"),
    ("model.layers.3.self_attn.q_proj.weight", (64, 64), "BF16", "weight", "attention.q"),
    ("model.layers.3.self_attn.k_proj.weight", (16, 64), "BF16", "weight", "attention.k"),
    ("model.layers.3.self_attn.v_proj.bias", (16,), "BF16", "bias", "attention.v"),
    ("model.layers.3.self_attn.o_proj.weight", (64, 64), "BF16", "weight", "attention.o"),
    ("model.layers.3.mlp.gate_proj.weight", (128, 64), "BF16", "weight", "mlp.gate"),
    ("model.layers.3.mlp.up_proj.weight", (128, 64), "BF16", "weight", "mlp.up"),
    ("model.layers.3.mlp.down_proj.weight", (64, 128), "BF16", "weight", "mlp.down"),
    ("model.layers.3.input_layernorm.weight", (64,), "BF16", "weight", "norm"),
    ("model.layers.3.self_attn.q_norm.weight", (16,), "BF16", "weight", "norm"),
    ("model.layers.3.self_attn.rotary_emb.inv_freq", (32,), "F32", "buffer", "attention"),
    ("model.norm.weight", (64,), "BF16", "weight", "norm"),
    ("lm_head.weight", (32000, 64), "BF16", "weight", "head"),
    # Phi
    ("model.layers.0.self_attn.qkv_proj.weight", (192, 64), "BF16", "weight", "attention.qkv"),
    ("model.layers.0.mlp.gate_up_proj.weight", (256, 64), "BF16", "weight", "mlp.gate_up"),
    # GPT-2
    ("transformer.wte.weight", (50257, 768), "F32", "embedding", "embedding"),
    ("transformer.wpe.weight", (1024, 768), "F32", "embedding", "embedding"),
    ("transformer.h.0.attn.c_attn.weight", (768, 2304), "F32", "weight", "attention.qkv"),
    ("transformer.h.0.attn.c_attn.bias", (2304,), "F32", "bias", "attention.qkv"),
    ("transformer.h.0.attn.bias", (1, 1, 1024, 1024), "F32", "buffer", "attention"),
    ("transformer.h.0.attn.c_proj.weight", (768, 768), "F32", "weight", "attention.o"),
    ("transformer.h.0.mlp.c_fc.weight", (768, 3072), "F32", "weight", "mlp.up"),
    ("transformer.h.0.mlp.c_proj.weight", (3072, 768), "F32", "weight", "mlp.down"),
    ("transformer.h.0.ln_1.bias", (768,), "F32", "bias", "norm"),
    ("transformer.ln_f.weight", (768,), "F32", "weight", "norm"),
    # BERT
    ("bert.embeddings.word_embeddings.weight", (30522, 768), "F32", "embedding", "embedding"),
    ("bert.embeddings.token_type_embeddings.weight", (2, 768), "F32", "embedding", "embedding"),
    ("bert.embeddings.LayerNorm.weight", (768,), "F32", "weight", "norm"),
    ("bert.embeddings.LayerNorm.bias", (768,), "F32", "bias", "norm"),
    ("bert.embeddings.position_ids", (1, 512), "I64", "buffer", "other"),
    ("bert.encoder.layer.0.attention.self.query.weight", (768, 768), "F32", "weight", "attention.q"),
    ("bert.encoder.layer.0.attention.output.dense.weight", (768, 768), "F32", "weight", "attention.o"),
    ("bert.encoder.layer.0.intermediate.dense.weight", (3072, 768), "F32", "weight", "mlp.up"),
    ("bert.encoder.layer.0.output.dense.weight", (768, 3072), "F32", "weight", "mlp.down"),
    # T5
    ("shared.weight", (32128, 512), "F32", "embedding", "embedding"),
    ("encoder.block.0.layer.0.SelfAttention.q.weight", (512, 512), "F32", "weight", "attention.q"),
    ("encoder.block.0.layer.0.SelfAttention.o.weight", (512, 512), "F32", "weight", "attention.o"),
    ("encoder.block.0.layer.1.DenseReluDense.wi.weight", (2048, 512), "F32", "weight", "mlp.up"),
    ("encoder.block.0.layer.1.DenseReluDense.wo.weight", (512, 2048), "F32", "weight", "mlp.down"),
    # GGUF
    ("token_embd.weight", (32000, 64), "Q8_0", "embedding", "embedding"),
    ("blk.5.attn_q.weight", (64, 64), "Q4_K", "weight", "attention.q"),
    ("blk.5.attn_output.weight", (64, 64), "Q4_K", "weight", "attention.o"),
    ("blk.5.ffn_gate.weight", (128, 64), "Q4_K", "weight", "mlp.gate"),
    ("blk.5.ffn_down.weight", (64, 128), "Q6_K", "weight", "mlp.down"),
    ("blk.5.attn_norm.weight", (64,), "F32", "weight", "norm"),
    ("output_norm.weight", (64,), "F32", "weight", "norm"),
    ("output.weight", (32000, 64), "Q6_K", "weight", "head"),
    # Meta's original Llama
    ("tok_embeddings.weight", (32000, 64), "BF16", "embedding", "embedding"),
    ("layers.1.attention.wq.weight", (64, 64), "BF16", "weight", "attention.q"),
    ("layers.1.feed_forward.w1.weight", (128, 64), "BF16", "weight", "mlp.gate"),
    ("layers.1.feed_forward.w2.weight", (64, 128), "BF16", "weight", "mlp.down"),
    ("layers.1.feed_forward.w3.weight", (128, 64), "BF16", "weight", "mlp.up"),
    # CNN state
    ("conv1.weight", (64, 3, 7, 7), "F32", "weight", "convolution"),
    ("bn1.running_var", (64,), "F32", "buffer", "norm"),
    ("bn1.num_batches_tracked", (), "I64", "buffer", "norm"),
    # packed integer weights stay weights
    ("model.layers.0.mlp.up_proj.qweight", (64, 128), "I32", "weight", "mlp.up"),
]


@pytest.mark.parametrize(("name", "shape", "dtype", "kind", "role"), CASES, ids=[c[0] for c in CASES])
def test_kind_and_role(name: str, shape: tuple, dtype: str, kind: str, role: str) -> None:
    assert classify(name, shape, dtype) == (kind, role)


@pytest.mark.parametrize(("name", "index"), [("model.layers.12.mlp.up_proj.weight", 12), ("blk.0.attn_q.weight", 0),
                                             ("transformer.h.7.ln_1.weight", 7), ("lm_head.weight", None),
                                             ("bert.encoder.layer.11.output.dense.bias", 11)])
def test_layer_index(name: str, index: int | None) -> None:
    assert layer_index(name) == index


TRAINING_STATE = [
    "optimizer.state.0.exp_avg", "optimizer_states.0.state.3.exp_avg_sq", "optim.state.12.momentum_buffer",
    "optimizer_state.state.7.step", "optimizer_state_dict.state.0.max_exp_avg_sq", "opt_state.state.1.sum",
    "my_sgd.state.4.momentum_buffer", "trainer.opt.state.3.step", "whatever.state.0.exp_avg_sq_row",
    "optimizer.state.0.exp_avg_sq_col", "optimizer.state.2.square_avg", "optimizer.state.2.acc_delta",
    "optimizer.param_groups.0.lr", "lr_schedulers.0.base_lrs", "scheduler.last_epoch", "callbacks.ModelCheckpoint.best",
    "ema.layers.0.weight", "model_ema.module.conv1.weight", "ema_state_dict.fc.bias", "shadow_params.3",
    "state_dict_ema.head.weight", "module.ema.fc.weight", "ema.bn1.running_mean", "loss", "epoch", "global_step",
]
MODEL_WEIGHTS = [
    "model.layers.0.self_attn.state.weight", "encoder.state.0.weight", "lstm.weight_ih_l0", "opt.decoder.weight",
    "state_proj.weight", "ema_gate.weight", "model.lossless.weight", "model.step_embedding.weight",
    "scheduler_net.0.weight.extra", "block.0.sum.weight",
]


@pytest.mark.parametrize("name", TRAINING_STATE)
def test_training_state_is_its_own_kind_and_not_a_parameter(name: str) -> None:
    assert classify(name, (4, 4), "F32") == ("state", "other")


@pytest.mark.parametrize("name", MODEL_WEIGHTS)
def test_model_tensors_that_look_a_little_like_training_state_stay_in_the_model(name: str) -> None:
    assert classify(name, (4, 4), "F32")[0] in ("weight", "bias", "embedding")


@pytest.mark.parametrize(("name", "kind", "role"), [
    ("lstm.weight_ih_l0", "weight", "recurrent"), ("lstm.weight_hh_l1_reverse", "weight", "recurrent"),
    ("lstm.bias_ih_l0", "bias", "recurrent"), ("encoder.rnn.bias_hh_l1_reverse", "bias", "recurrent"),
    ("gru.weight_hr_l0", "weight", "recurrent"), ("cell.bias_hh", "bias", "recurrent"),
    ("attn.bias_k", "bias", "attention"), ("bn1.weight", "weight", "norm"), ("layer1.0.bn2.bias", "bias", "norm"),
    ("features.BatchNorm.weight", "weight", "norm"), ("classifier.1.weight", "weight", "head"),
    ("bert.pooler.dense.weight", "weight", "head"), ("roberta.classifier.dense.bias", "bias", "head"),
    ("fc.weight", "weight", "head"),
])
def test_recurrent_norm_and_head_roles(name: str, kind: str, role: str) -> None:
    assert classify(name, (4, 4), "F32") == (kind, role)


@pytest.mark.parametrize("name", ["model.layers.²", "layers." + "9" * 5000 + ".weight", "layers.٣.weight"])
def test_odd_digits_are_not_block_numbers(name: str) -> None:
    assert layer_index(name) is None
    classify(name, (2,), "F32")


def test_bare_names_classify_as_the_general_rules_do() -> None:
    """classify's fast path for names without dots equals classify_uncached on every word the rules know,
    in several cases and with affixes, for float, integer and unknown dtypes and every rank."""
    from core import taxonomy, training_state

    words: set[str] = set()
    for collection in (taxonomy._EMBEDDING_MODULES, taxonomy._BUFFER_LEAVES, taxonomy._INT_WEIGHT_LEAVES,
                       taxonomy._HEAD_MODULES, taxonomy._BARE_HEADS, training_state.TRAINER_SCALARS,
                       training_state.OPTIMIZER_CONTAINERS, training_state.TOP_CONTAINERS,
                       training_state.EMA_CONTAINERS, training_state.DISTINCTIVE_MOMENTS,
                       training_state.GENERIC_MOMENTS):
        words |= set(collection)
    words |= {"bias", "bias_ih_l0", "bias_hh_l1_reverse", "weight_ih_l0", "q", "k", "v", "o", "wq", "w1", "fc1",
              "ln_f", "ln_1", "bn1", "qkv", "c_attn", "conv1", "lstm", "gru2", "rms_norm", "feedforward", "c_fc",
              "mlp", "ffn", "attn", "gate", "up_proj", "a1", "ff", "x", "zz9", "norm", "layernorm_bias"}
    names = set()
    for word in words:
        names |= {word, word.upper(), word.capitalize(), f"{word}_x", f"x_{word}", f"{word}1", f"my{word}"}
    for name in sorted(names):
        for dtype in ("F32", "BF16", "I64", "U8", "BOOL", "Q4_K", "NOPE"):
            for ndim in range(5):
                shape = (2,) * ndim
                assert taxonomy.classify(name, shape, dtype) == taxonomy.classify_uncached(name, shape, dtype), \
                    (name, dtype, ndim)
