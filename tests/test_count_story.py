"""How the count adds up: the derivation from the architecture equals the tensors' count, to the parameter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import main
from core.count_story import count_story, story_from_facts
from core.formats import open_checkpoint
from core.number_words import bytes_both_ways, count_in_words
from tests.llama_shapes import LLAMA_31_405B, LLAMA_31_405B_PARAMETERS, write_sparse_sharded_model


def test_sample_count_is_derived_exactly() -> None:
    with open_checkpoint("resources/samples/tiny-llama") as checkpoint:
        story = count_story(checkpoint)
        actual = checkpoint.parameter_count
    assert story is not None and story.matches and story.total == actual == 803_968
    # independent arithmetic: V=256, d=128, 4 blocks, 4 heads of 32, 2 key/value heads, MLP 352, untied head
    block = (128 * 128 + 2 * 128 * 64 + 128 * 128) + 3 * 128 * 352 + 2 * 128
    assert story.block == block == 184_576
    assert story.equation() == f"embedding 32,768 + 4 × 184,576 + final norm 128 + head 32,768 = {actual:,}"
    assert story.lines()[-1] == "This is exactly the 803,968 parameters the file holds."


def test_llama_405b_header_adds_up_to_its_published_count(tmp_path: Path) -> None:
    write_sparse_sharded_model(str(tmp_path / "llama"), LLAMA_31_405B, shards=4)
    with open_checkpoint(str(tmp_path / "llama")) as checkpoint:
        story = count_story(checkpoint)
    assert story is not None and story.layers == 126
    assert story.total == story.actual == LLAMA_31_405B_PARAMETERS
    assert story.block == 3_187_703_808 and count_in_words(story.block) == "3.188 billion"
    assert story.embedding.value == 128_256 * 16_384
    assert "query 16,384×16,384 + key and value 2×16,384×1,024 + output 16,384×16,384" in story.lines()[2]


def test_tied_head_adds_nothing_and_a_mismatch_is_named() -> None:
    facts = {"vocab_size": 10, "hidden_size": 8, "layers": 2, "heads": 2, "kv_heads": 2, "intermediate_size": 16,
             "tied_embeddings": True}
    block = 4 * 8 * 8 + 3 * 8 * 16 + 2 * 8
    expected = 10 * 8 + 2 * block + 8
    story = story_from_facts(facts, expected)
    assert story is not None and story.head is None and story.total == expected and story.matches
    assert "tied to the embedding" in "\n".join(story.lines())
    off = story_from_facts(facts, expected + 48)
    assert off is not None and not off.matches
    assert off.lines()[-1].startswith(f"The file holds {expected + 48:,} parameters: 48 more than this formula")


def test_missing_or_hostile_facts_give_no_story() -> None:
    good = {"vocab_size": 10, "hidden_size": 8, "layers": 2, "heads": 2, "intermediate_size": 16}
    assert story_from_facts(good, 0) is not None
    for key, bad in [("layers", None), ("heads", 0), ("hidden_size", "8"), ("vocab_size", True), ("layers", -1)]:
        assert story_from_facts({**good, key: bad}, 0) is None
    assert story_from_facts({**good, "encoder_only": True}, 0) is None


def test_count_and_size_words() -> None:
    assert count_in_words(LLAMA_31_405B_PARAMETERS) == "405.9 billion"
    assert count_in_words(8_030_261_248) == "8.03 billion"
    assert count_in_words(999) == "999"
    assert bytes_both_ways(2 * LLAMA_31_405B_PARAMETERS) == "812 GB = 756 GiB"
    assert bytes_both_ways(3_216_000) == "3.22 MB = 3.07 MiB"
    assert bytes_both_ways(512) == "512 bytes"


def test_info_text_shows_the_derivation(capsys) -> None:
    assert main.main(["info", "resources/samples/tiny-llama"]) == 0
    out = capsys.readouterr().out
    assert "How the count adds up" in out and "= 803,968" in out
    assert main.main(["info", "--json", "resources/samples/tiny-llama"]) == 0
    assert json.loads(capsys.readouterr().out)["parameter_count"] == 803_968


@pytest.mark.parametrize("name", ["deepseek-v3", "mixtral-8x7b", "qwen3-30b-a3b", "gemma-2-9b"])
def test_models_the_formula_does_not_describe_add_up_block_by_block(name: str) -> None:
    """MoE, latent attention and extra norms: the count is added up from the tensors, exactly."""
    import re

    from core.count_story import BlockStory, count_story
    from core.formats import open_checkpoint

    with open_checkpoint(name) as checkpoint:
        story = count_story(checkpoint)
        assert isinstance(story, BlockStory) and story.matches
        assert story.total == checkpoint.parameter_count == sum(t.elements for t in checkpoint.tensors
                                                                 if t.is_parameter)
        numbers = [int(n.replace(",", "")) for n in re.findall(r"[\d,]{2,}", story.equation().split("=")[0])]
        assert sum(g.count * g.per_block for g in story.groups) + sum(t.value for t in story.outside) == story.total
        assert story.groups[-1].last + 1 == checkpoint.architecture["layers"]
        assert numbers  # the equation names the figures it adds
