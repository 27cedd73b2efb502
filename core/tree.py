"""The layer tree: tensors grouped by their dotted names, with counts at every node.

Every node aggregates what lies below it (tensor count, elements per kind,
bytes, dtypes). ``fold_repeats`` turns runs of structurally identical numbered
blocks (``layers.0`` ... ``layers.31``) into one group node, "layers.0-31 (x32)",
whose children sum the matching tensors of every block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from core.checkpoint import TensorInfo


@dataclass(eq=False)
class TreeNode:
    name: str
    path: str
    children: list[TreeNode] = field(default_factory=list)
    tensors: list[TensorInfo] = field(default_factory=list)  # tensors at this exact node (several when folded)
    repeat: int = 1  # how many blocks a folded node stands for
    tensor_count: int = 0
    elements: int = 0
    nbytes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    dtypes: dict[str, int] = field(default_factory=dict)
    roles: dict[str, int] = field(default_factory=dict)
    members: list[TreeNode] = field(default_factory=list)  # folded group: the original block nodes

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def tensor(self) -> TensorInfo | None:
        """The representative tensor of a leaf (block 0's for a folded leaf)."""
        return self.tensors[0] if self.tensors else None

    @property
    def parameters(self) -> int:
        return self.elements - self.by_kind.get("buffer", 0)

    def walk(self) -> Iterator[TreeNode]:
        yield self
        for child in self.children:
            yield from child.walk()

    def all_tensors(self) -> list[TensorInfo]:
        """Every tensor below this node, in file order of discovery, each once."""
        out: list[TensorInfo] = []
        for node in self.walk():
            out.extend(node.tensors)
        return out

    def find(self, path: str) -> TreeNode | None:
        for node in self.walk():
            if node.path == path:
                return node
        return None

    def _add(self, t: TensorInfo) -> None:
        self.tensor_count += 1
        self.elements += t.elements
        self.nbytes += t.nbytes
        self.by_kind[t.kind] = self.by_kind.get(t.kind, 0) + t.elements
        self.dtypes[t.dtype] = self.dtypes.get(t.dtype, 0) + t.elements
        if t.kind != "buffer":
            self.roles[t.role] = self.roles.get(t.role, 0) + t.elements


def build_tree(tensors: Iterable[TensorInfo], root_name: str = "model") -> TreeNode:
    """Nodes per dotted name component; children keep the order in which names first appear."""
    root = TreeNode(root_name, "")
    index: dict[str, TreeNode] = {"": root}
    for t in tensors:
        parts = t.name.split(".")
        node = root
        prefix = ""
        for part in parts:
            prefix = f"{prefix}.{part}" if prefix else part
            child = index.get(prefix)
            if child is None:
                child = TreeNode(part, prefix)
                index[prefix] = child
                node.children.append(child)
            node._add(t)
            node = child
        node._add(t)
        node.tensors.append(t)
    _sort_numeric(root)
    return root


def _sort_numeric(node: TreeNode) -> None:
    """Numbered children in numeric order (2 before 10); others keep file order."""
    if len(node.children) > 1 and all(c.name.isdigit() for c in node.children):
        node.children.sort(key=lambda c: int(c.name))
    for child in node.children:
        _sort_numeric(child)


def _signature(node: TreeNode) -> tuple:
    """What makes two blocks 'the same': relative tensor names, shapes and dtypes."""
    base = len(node.path) + 1 if node.path else 0
    return tuple(sorted((t.name[base:], t.shape, t.dtype) for t in node.all_tensors()))


def fold_repeats(node: TreeNode, min_run: int = 2) -> TreeNode:
    """A copy of the tree with runs of identical numbered blocks folded into group nodes."""
    children = [fold_repeats(c, min_run) for c in node.children]
    if len(node.children) >= min_run and all(c.name.isdigit() for c in node.children):
        children = _fold_runs(node, min_run) or children
    folded = TreeNode(node.name, node.path, children=children, tensors=list(node.tensors), repeat=node.repeat,
                      members=list(node.members))
    _copy_counts(node, folded)
    if len(children) == 1 and children[0].members and len(children[0].members) == len(node.children):
        group = children[0]  # the whole list is one run: "layers.0-31 (x32)"
        group.name = f"{node.name}.{group.name}"
        group.path = node.path
        return group
    return folded


def _fold_runs(node: TreeNode, min_run: int) -> list[TreeNode] | None:
    runs: list[list[TreeNode]] = []
    last_sig = None
    for child in node.children:
        sig = _signature(child)
        if runs and sig == last_sig and int(child.name) == int(runs[-1][-1].name) + 1:
            runs[-1].append(child)
        else:
            runs.append([child])
        last_sig = sig
    if all(len(run) < min_run for run in runs):
        return None
    out: list[TreeNode] = []
    for run in runs:
        if len(run) < min_run:
            out.extend(fold_repeats(c, min_run) for c in run)
        else:
            out.append(_merge_run(run))
    return out


def _merge_run(run: list[TreeNode]) -> TreeNode:
    first, last = run[0], run[-1]
    group = TreeNode(f"{first.name}-{last.name} (x{len(run)})", first.path, repeat=len(run), members=list(run))
    for member in run:
        _accumulate(group, member)
    group.children = _merge_children([m.children for m in run], len(run))
    return group


def _merge_children(lists: list[list[TreeNode]], repeat: int) -> list[TreeNode]:
    """Children of identical blocks, position by position, summed into one node each."""
    merged: list[TreeNode] = []
    for column in zip(*lists, strict=True):
        template = column[0]
        node = TreeNode(template.name, template.path, repeat=repeat)
        for member in column:
            _accumulate(node, member)
            node.tensors.extend(member.tensors)
        node.children = _merge_children([m.children for m in column], repeat)
        merged.append(node)
    return merged


def _accumulate(target: TreeNode, source: TreeNode) -> None:
    target.tensor_count += source.tensor_count
    target.elements += source.elements
    target.nbytes += source.nbytes
    for attr in ("by_kind", "dtypes", "roles"):
        dest = getattr(target, attr)
        for key, value in getattr(source, attr).items():
            dest[key] = dest.get(key, 0) + value


def _copy_counts(source: TreeNode, target: TreeNode) -> None:
    target.tensor_count = source.tensor_count
    target.elements = source.elements
    target.nbytes = source.nbytes
    target.by_kind = dict(source.by_kind)
    target.dtypes = dict(source.dtypes)
    target.roles = dict(source.roles)
