"""Training checkpoints: optimizer moments, scheduler state and EMA copies are training state, not parameters.

Every file is written by torch.save in the layout real training code uses, after a real optimizer step, and
every expected count comes from torch itself (model.parameters(), model.buffers(), optimizer.state_dict()).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import main
from core.formats import open_checkpoint
from core.numbers import human_count
from core.tree import build_tree, fold_repeats


def numel(tensors) -> int:
    return sum(t.numel() for t in tensors)


def state_numel(obj) -> int:
    """Every tensor element inside a nested dict/list, the way torch stores optimizer and scheduler state."""
    if isinstance(obj, torch.Tensor):
        return obj.numel()
    if isinstance(obj, dict):
        return sum(state_numel(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_numel(v) for v in obj)
    return 0


class SmallNet(nn.Module):
    """Linear layers, a BatchNorm and a classifier head: weights, biases, norm scales and buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.bn1 = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 8)
        self.classifier = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.relu(self.fc2(torch.relu(self.bn1(self.fc1(x))))))


class SpeakerEncoder(nn.Module):
    """The shape of the GE2E speaker encoder: a 3-layer LSTM, a projection and a similarity scale."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=10, hidden_size=24, num_layers=3, batch_first=True)
        self.linear = nn.Linear(24, 16)
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.linear(out[:, -1]) * self.similarity_weight + self.similarity_bias


def trained(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, steps: int = 2) -> torch.Tensor:
    """Real optimizer steps, so the optimizer holds the moments it would hold in a real checkpoint."""
    torch.manual_seed(0)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(inputs).pow(2).mean()
        loss.backward()
        optimizer.step()
    return loss.detach()


def model_counts(model: nn.Module) -> tuple[int, int]:
    return numel(model.parameters()), numel(model.buffers())


def test_pytorch_tutorial_layout(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = SmallNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = trained(model, optimizer, torch.randn(5, 12))
    path = tmp_path / "tutorial.pt"
    torch.save({"epoch": 7, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                "loss": loss}, path)
    params, buffers = model_counts(model)
    state = state_numel(optimizer.state_dict()) + loss.numel()
    assert state > 2 * params  # exp_avg and exp_avg_sq per parameter, plus step counters
    with open_checkpoint(str(path)) as cp:
        assert cp.parameter_count == params
        kinds = cp.by_kind()
        assert kinds["state"] == state and kinds["buffer"] == buffers
        assert sum(kinds.values()) == cp.element_count
        assert cp.by_kind()["bias"] == numel(p for n, p in model.named_parameters() if "bias" in n)
        assert {t.role for t in cp.tensors if t.name.startswith("model_state_dict.bn1.") and t.is_parameter} \
            == {"norm"}
        assert {t.role for t in cp.tensors if t.name.startswith("model_state_dict.classifier.")} == {"head"}
        assert sum(cp.by_role().values()) == params


def test_speaker_encoder_layout_counts_the_model_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(2)
    model = SpeakerEncoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    trained(model, optimizer, torch.randn(4, 6, 10))
    path = tmp_path / "encoder.pt"
    torch.save({"step": 315000, "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict()}, path)
    params, _ = model_counts(model)
    state = state_numel(optimizer.state_dict())
    with open_checkpoint(str(path)) as cp:
        assert cp.parameter_count == params
        assert cp.by_kind()["state"] == state
    assert main.main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert (f"Model       {human_count(params)} parameters; the file also holds {human_count(state)} values of "
            "training state") in text
    assert "(parameters + buffers + training state)" in text
    assert main.main(["info", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parameter_count"] == params and out["by_kind"]["state"] == state
    assert sum(out["by_kind"].values()) == out["element_count"]


def test_lightning_layout(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = SmallNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, amsgrad=True)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    trained(model, optimizer, torch.randn(5, 12))
    scheduler.step()
    best = torch.tensor(0.125)
    checkpoint = {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [scheduler.state_dict()],
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": best}},
        "hyper_parameters": {"lr": 1e-3, "hidden": 16}, "loops": {"fit_loop": {"epoch_progress": {"total": 3}}},
    }
    path = tmp_path / "last.ckpt"
    torch.save(checkpoint, path)
    params, buffers = model_counts(model)
    state = state_numel(optimizer.state_dict()) + state_numel(scheduler.state_dict()) + best.numel()
    with open_checkpoint(str(path)) as cp:
        assert cp.parameter_count == params
        assert cp.by_kind()["state"] == state and cp.by_kind()["buffer"] == buffers
        assert any(t.name.endswith(".max_exp_avg_sq") and t.kind == "state" for t in cp.tensors)


OPTIMIZERS = [
    ("sgd-momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    ("adagrad", lambda p: torch.optim.Adagrad(p, lr=0.1)),
    ("rmsprop-centered", lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True)),
    ("adadelta", lambda p: torch.optim.Adadelta(p)),
    ("adamax", lambda p: torch.optim.Adamax(p)),
    ("nadam", lambda p: torch.optim.NAdam(p)),
    ("radam", lambda p: torch.optim.RAdam(p)),
    ("asgd", lambda p: torch.optim.ASGD(p)),
    ("rprop", lambda p: torch.optim.Rprop(p)),
    ("adamw", lambda p: torch.optim.AdamW(p)),
]


@pytest.mark.parametrize(("key", "make"), [(k, m) for _, m in OPTIMIZERS for k in ("my_opt", "optimizer")],
                         ids=[f"{name}-under-{k}" for name, _ in OPTIMIZERS for k in ("my_opt", "optimizer")])
def test_every_common_optimizer_under_any_key(tmp_path: Path, key: str, make) -> None:
    """torch.optim's own layout, "<key>.state.<param id>.<moment>", whatever the key is called."""
    torch.manual_seed(4)
    model = SmallNet()
    optimizer = make(model.parameters())
    trained(model, optimizer, torch.randn(5, 12))
    path = tmp_path / "ckpt.pt"
    torch.save({"net": model.state_dict(), key: optimizer.state_dict()}, path)
    params, buffers = model_counts(model)
    state = state_numel(optimizer.state_dict())
    assert state > 0
    with open_checkpoint(str(path)) as cp:
        assert cp.parameter_count == params
        assert cp.by_kind()["state"] == state and cp.by_kind()["buffer"] == buffers


@pytest.mark.parametrize("layout", ["ema-key", "timm", "torch_ema"])
def test_ema_copies_are_counted_once_and_apart(tmp_path: Path, layout: str) -> None:
    torch.manual_seed(5)
    model = SmallNet()
    ema = SmallNet()
    ema.load_state_dict(model.state_dict())
    if layout == "ema-key":
        saved = {"model": model.state_dict(), "ema": ema.state_dict(), "epoch": 2}
        ema_values = numel(ema.state_dict().values())
    elif layout == "timm":
        saved = {"state_dict": model.state_dict(), "state_dict_ema": ema.state_dict(), "arch": "smallnet"}
        ema_values = numel(ema.state_dict().values())
    else:
        saved = {"model": model.state_dict(),
                 "ema": {"decay": 0.999, "num_updates": 10, "shadow_params": [p.detach().clone() for p in
                                                                            ema.parameters()]}}
        ema_values = numel(ema.parameters())
    path = tmp_path / "ema.pt"
    torch.save(saved, path)
    params, buffers = model_counts(model)
    with open_checkpoint(str(path)) as cp:
        assert cp.parameter_count == params
        assert cp.by_kind()["state"] == ema_values and cp.by_kind()["buffer"] == buffers
        tree = build_tree(cp.tensors)
    assert tree.parameters == params
    model_nodes = [c for c in tree.children if not c.is_training_state]
    state_nodes = [c for c in tree.children if c.is_training_state]
    assert tree.children == model_nodes + state_nodes  # the model first, training state as its own section
    assert sum(n.elements for n in state_nodes) == ema_values and all(n.parameters == 0 for n in state_nodes)


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_recurrent_biases_and_weights(tmp_path: Path, cell: type[nn.Module]) -> None:
    torch.manual_seed(6)
    model = nn.Sequential()
    model.add_module("rnn", cell(input_size=7, hidden_size=9, num_layers=2, bidirectional=True))
    model.add_module("head", nn.Linear(18, 4))
    path = tmp_path / "rnn.pt"
    torch.save(model.state_dict(), path)
    named = dict(model.named_parameters())
    torch_biases = numel(p for n, p in named.items() if "bias" in n)
    with open_checkpoint(str(path)) as cp:
        kinds = cp.by_kind()
        assert cp.parameter_count == numel(model.parameters())
        assert kinds["bias"] == torch_biases
        assert kinds["weight"] == numel(p for n, p in named.items() if "bias" not in n)
        recurrent = {t.name for t in cp.tensors if t.role == "recurrent"}
        assert recurrent == {n for n in named if n.startswith("rnn.")}
        assert cp.by_role()["recurrent"] == numel(p for n, p in named.items() if n.startswith("rnn."))
        assert {t.name for t in cp.tensors if t.role == "head"} == {"head.weight", "head.bias"}


def test_cnn_batch_norm_is_norm_and_its_statistics_are_buffers(tmp_path: Path) -> None:
    model = nn.Sequential()
    model.add_module("conv1", nn.Conv2d(3, 4, 3))
    model.add_module("bn1", nn.BatchNorm2d(4))
    model.add_module("conv2", nn.Conv2d(4, 4, 3))
    model.add_module("bn2", nn.BatchNorm2d(4))
    model.add_module("fc", nn.Linear(4, 2))
    path = tmp_path / "cnn.pt"
    torch.save(model.state_dict(), path)
    with open_checkpoint(str(path)) as cp:
        roles = {t.name: (t.kind, t.role) for t in cp.tensors}
        assert cp.parameter_count == numel(model.parameters())
        assert cp.by_kind()["buffer"] == numel(model.buffers())
    assert roles["bn1.weight"] == ("weight", "norm") and roles["bn2.bias"] == ("bias", "norm")
    assert roles["bn1.running_mean"] == ("buffer", "norm")
    assert roles["conv2.weight"] == ("weight", "convolution") and roles["fc.weight"] == ("weight", "head")


def test_a_training_checkpoint_folds_and_sums_like_its_model(tmp_path: Path) -> None:
    """Blocks under the model and under the optimizer fold separately; no folded node counts state as parameters."""
    torch.manual_seed(7)
    model = nn.Sequential(*[nn.Linear(6, 6) for _ in range(4)])
    optimizer = torch.optim.Adam(model.parameters())
    trained(model, optimizer, torch.randn(3, 6))
    path = tmp_path / "seq.pt"
    torch.save({"model_state": model.state_dict(), "optimizer_state": optimizer.state_dict()}, path)
    with open_checkpoint(str(path)) as cp:
        folded = fold_repeats(build_tree(cp.tensors))
    names = [c.name for c in folded.children]
    assert names == ["model_state.0-3 (x4)", "optimizer_state"]
    assert folded.parameters == numel(model.parameters())
    assert all(node.parameters == 0 for node in folded.children[1].walk())


def test_report_keeps_training_state_out_of_the_parameters(tmp_path: Path) -> None:
    from core.report import LEGEND_TERMS, Table, layer_rows, summary_blocks
    from core.stats import run

    torch.manual_seed(8)
    model = SmallNet()
    optimizer = torch.optim.Adam(model.parameters())
    trained(model, optimizer, torch.randn(5, 12))
    path = tmp_path / "report.pt"
    torch.save({"model_state": model.state_dict(), "optimizer_state": optimizer.state_dict()}, path)
    params, _ = model_counts(model)
    state = state_numel(optimizer.state_dict())
    with open_checkpoint(str(path)) as cp:
        result = run(cp, use_cache=False, device="cpu")
        kinds = next(b for b in summary_blocks(cp, result) if isinstance(b, Table) and b.title == "Parameters by kind")
        rows, _, _, _ = layer_rows(cp, result)
    by_label = {row[0]: row for row in kinds.rows}
    assert by_label["total parameters"][2] == f"{params:,}"
    assert by_label["training state (not the model)"][2] == f"{state:,}"
    optimizer_row = next(row for row in rows if row[0].startswith("optimizer_state"))
    assert optimizer_row[1] == f"state, {human_count(state)}" and optimizer_row[2] == ""
    assert any(term == "Training state" for term, _ in LEGEND_TERMS)


def test_corpus_tutorial_checkpoint_counts_only_its_two_linear_layers() -> None:
    """burn's checkpoint.pt: {"epoch", "model_state_dict", "optimizer_state_dict", "loss"} of Linear(5, 10) and
    Linear(10, 3) with SGD momentum; the manifest lists 143 elements, of which the model is 5*10+10 + 10*3+3."""
    from tests.corpus import CORPUS, truth

    entry = next(e for e in truth() if e["file"] == "good/pytorch/burn-checkpoint.pt")
    with open_checkpoint(str(CORPUS / entry["file"])) as cp:
        assert cp.parameter_count == 5 * 10 + 10 + 10 * 3 + 3
        assert cp.by_kind()["state"] == entry["elements"] - cp.parameter_count
        assert {t.name for t in cp.tensors if t.kind == "state"} == {"optimizer_state_dict.state.0.momentum_buffer"}
