"""The layer tree: tensors grouped by their dotted names, with counts at every node.

Every node aggregates what lies below it (tensor count, elements per kind,
bytes, dtypes). ``fold_repeats`` turns runs of structurally identical numbered
blocks (``layers.0`` ... ``layers.31``) into one group node, "layers.0-31 (x32)",
whose children sum the matching tensors of every block. Blocks that differ only in which quantised type
holds a tensor (llama.cpp's Q4_K_M gives some blocks Q6_K) fold too, marked "(mixed quantisation)", and the
group lists what differs.

The tree depends only on the set of tensors, never on their order in the file
or on how a model is sharded: children are sorted canonically (numbers by
value, training state after the model), and blocks are compared and merged by
name. Files are hostile, so nothing here recurses on name depth or compares
numbers through int() of unbounded digit strings, and folding is near-linear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from core import dtypes
from core.checkpoint import TensorInfo

MAX_DEPTH = 64  # deeper names keep their tail as one leaf name: no model nests this deep, hostile files do
_NOT_PARAMETERS = ("buffer", "state")
_DIGIT_RUNS = re.compile(r"([0-9]+)")
_MAX_INT_DIGITS = 18  # block numbers longer than this are names, not positions to fold
MIXED_QUANTISATION = "(mixed quantisation)"
_DIFFERENCE_LINES = 12  # a fold tooltip names at most this many differing tensors
_BLOCKS_NAMED = 10  # ... and at most this many block numbers per type


@dataclass(eq=False, slots=True)
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
    differences: list[str] = field(default_factory=list)  # folded group of mixed quantisation: what differs

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def tensor(self) -> TensorInfo | None:
        """The representative tensor of a leaf (block 0's for a folded leaf)."""
        return self.tensors[0] if self.tensors else None

    @property
    def parameters(self) -> int:
        """Learned values of the model below this node: buffers and training state are not parameters."""
        return self.elements - sum(self.by_kind.get(kind, 0) for kind in _NOT_PARAMETERS)

    @property
    def is_training_state(self) -> bool:
        """Everything below is optimizer, scheduler or EMA state (shown as its own section)."""
        return bool(self.by_kind) and set(self.by_kind) == {"state"}

    def walk(self) -> Iterator[TreeNode]:
        """This node and every node below it, depth first in child order (iterative: names may nest deeply)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def all_tensors(self) -> list[TensorInfo]:
        """Every tensor below this node, in tree order, each once."""
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
        if t.kind not in _NOT_PARAMETERS:
            self.roles[t.role] = self.roles.get(t.role, 0) + t.elements


def name_parts(name: str) -> list[str]:
    """The dotted components of a tensor name, at most MAX_DEPTH of them."""
    return name.split(".", MAX_DEPTH - 1)


def natural_key(name: str) -> tuple:
    """Sort key that orders ASCII digit runs by value (2 before 10) without int(): runs may be 5,000 digits long.

    ``re.split`` with a capturing group alternates text and digits, so equal positions always hold the same
    type and any two keys compare.
    """
    key: list[tuple] = []
    for i, piece in enumerate(_DIGIT_RUNS.split(name)):
        if i % 2:
            value = piece.lstrip("0")
            key.append((len(value), value, piece))
        else:
            key.append((piece.lower(), piece))
    return tuple(key)


def child_order(node: TreeNode) -> tuple:
    """Canonical position among siblings: the model first, training state after it, names in natural order."""
    return node.is_training_state, natural_key(node.name)


def build_tree(tensors: Iterable[TensorInfo], root_name: str = "model") -> TreeNode:
    """Nodes per dotted name component, children in canonical order whatever the file order."""
    root = TreeNode(root_name, "")
    index: dict[str, TreeNode] = {}  # by path; the root stays out, so a hostile empty name is a child, not the root
    for t in tensors:
        node = root
        prefix = ""
        for part in name_parts(t.name):
            prefix = f"{prefix}.{part}" if node is not root else part
            child = index.get(prefix)
            if child is None:
                child = TreeNode(part, prefix)
                index[prefix] = child
                node.children.append(child)
            node = child
        node.tensors.append(t)
    for node in _postorder(root):  # counts bottom-up: once per node, not once per tensor per ancestor
        for t in node.tensors:
            node._add(t)
        for child in node.children:
            _accumulate(node, child)
        if len(node.children) > 1:
            node.children.sort(key=child_order)
    return root


def _postorder(root: TreeNode) -> list[TreeNode]:
    """Every node after all of its descendants, without recursion."""
    order: list[TreeNode] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    order.reverse()
    return order


_QUANTISED: dict[str, bool] = {}


def _fold_dtype(name: str) -> str:
    """The dtype as folding compares it: every block-quantised type alike, so a Q4_K/Q6_K mix still folds."""
    quantised = _QUANTISED.get(name)
    if quantised is None:
        found = dtypes.lookup(name)
        quantised = _QUANTISED[name] = found is not None and found.is_quantized
    return "quantised" if quantised else name


def _signatures(root: TreeNode, exact: bool = False) -> dict[int, int]:
    """id(node) -> a small int equal for two nodes exactly when their subtrees hold the same relative names,
    shapes and dtypes (quantised types alike unless ``exact``); computed bottom-up once per node."""
    interned: dict[tuple, int] = {}
    out: dict[int, int] = {}
    for node in _postorder(root):
        own = tuple(sorted((t.shape, t.dtype if exact else _fold_dtype(t.dtype)) for t in node.tensors))
        key = (own, tuple((c.name, out[id(c)]) for c in node.children))
        out[id(node)] = interned.setdefault(key, len(interned))
    return out


def _is_index(name: str) -> bool:
    return name.isascii() and name.isdecimal()


def _follows(previous: str, name: str) -> bool:
    """``name`` is the block number right after ``previous`` (both ASCII digit strings)."""
    if len(previous) > _MAX_INT_DIGITS or len(name) > _MAX_INT_DIGITS:
        return False
    return int(name) == int(previous) + 1


def fold_repeats(node: TreeNode, min_run: int = 2) -> TreeNode:
    """A copy of the tree with runs of identical numbered blocks folded into group nodes.

    Bottom-up and iterative: every node is folded once, and a group's children merge its members' (already
    folded) children by name.
    """
    signatures = _signatures(node)
    exact: dict[int, int] | None = None  # computed only when some quantised tensor makes it matter
    folded: dict[int, TreeNode] = {}
    for original in _postorder(node):
        children = [folded[id(c)] for c in original.children]
        if len(original.children) >= min_run and all(_is_index(c.name) for c in original.children):
            runs = _runs(original.children, signatures)
            if any(len(run) >= min_run for run in runs):
                children = []
                for run in runs:
                    if len(run) < min_run:
                        children.extend(folded[id(c)] for c in run)
                    else:
                        group = _merge_run(run, [folded[id(c)] for c in run])
                        if any(_fold_dtype(d) == "quantised" for d in group.dtypes):
                            exact = exact if exact is not None else _signatures(node, exact=True)
                            if len({exact[id(c)] for c in run}) > 1:
                                group.name = f"{group.name} {MIXED_QUANTISATION}"
                                group.differences = _differences(run)
                        children.append(group)
                if len(runs) == 1:  # the whole list is one run: "layers.0-31 (x32)"
                    group = children[0]
                    group.name = f"{original.name}.{group.name}"
                    group.path = original.path
                    folded[id(original)] = group
                    continue
        copy = TreeNode(original.name, original.path, children=children, tensors=list(original.tensors),
                        repeat=original.repeat, members=list(original.members),
                        differences=list(original.differences))
        _copy_counts(original, copy)
        folded[id(original)] = copy
    return folded[id(node)]


def _runs(children: list[TreeNode], signatures: dict[int, int]) -> list[list[TreeNode]]:
    """Numbered siblings split into runs of consecutive numbers with the same signature."""
    runs: list[list[TreeNode]] = []
    for child in children:
        if runs:
            last = runs[-1][-1]
            if signatures[id(child)] == signatures[id(last)] and _follows(last.name, child.name):
                runs[-1].append(child)
                continue
        runs.append([child])
    return runs


def _merge_run(run: list[TreeNode], folded_run: list[TreeNode]) -> TreeNode:
    first, last = run[0], run[-1]
    group = TreeNode(f"{first.name}-{last.name} (x{len(run)})", first.path, repeat=len(run), members=list(run))
    for member in folded_run:
        _accumulate(group, member)
        group.tensors.extend(member.tensors)
    _merge_children(group, folded_run, len(run))
    return group


def _differences(run: list[TreeNode]) -> list[str]:
    """Per tensor (relative to its block) whose type varies: "attn_v.weight: Q6_K in blocks 0, 3; Q4_K in 1, 2"."""
    by_name: dict[str, dict[str, list[str]]] = {}
    for block in run:
        prefix = len(block.path) + 1
        for t in block.all_tensors():
            by_name.setdefault(t.name[prefix:], {}).setdefault(t.dtype, []).append(block.name)
    lines = []
    for name, types in by_name.items():
        if len(types) < 2:
            continue
        parts = []
        for dtype, blocks in sorted(types.items(), key=lambda kv: -len(kv[1])):
            shown = ", ".join(blocks[:_BLOCKS_NAMED]) + (f" and {len(blocks) - _BLOCKS_NAMED} more"
                                                          if len(blocks) > _BLOCKS_NAMED else "")
            parts.append(f"{dtype} in block{'s' if len(blocks) > 1 else ''} {shown}")
        lines.append(f"{name}: " + "; ".join(parts))
    if len(lines) > _DIFFERENCE_LINES:
        lines = [*lines[:_DIFFERENCE_LINES], f"... and {len(lines) - _DIFFERENCE_LINES} more tensors"]
    return lines


def _merge_children(target: TreeNode, sources: list[TreeNode], repeat: int) -> None:
    """Children of identical blocks, matched by name (never by position), summed into one node each."""
    work = [(target, sources)]
    while work:
        into, column = work.pop()
        by_name: dict[str, list[TreeNode]] = {}
        for source in column:
            for child in source.children:
                by_name.setdefault(child.name, []).append(child)
        for name, matching in by_name.items():
            template = matching[0]
            node = TreeNode(name, template.path, repeat=repeat * template.repeat,
                            members=[m for c in matching for m in c.members])
            for member in matching:
                _accumulate(node, member)
                node.tensors.extend(member.tensors)
            into.children.append(node)
            work.append((node, matching))
        into.children.sort(key=child_order)


def _accumulate(target: TreeNode, source: TreeNode) -> None:
    target.tensor_count += source.tensor_count
    target.elements += source.elements
    target.nbytes += source.nbytes
    for dest, counts in ((target.by_kind, source.by_kind), (target.dtypes, source.dtypes),
                         (target.roles, source.roles)):
        if not dest:
            dest.update(counts)  # the first child's counts: copied at C speed
            continue
        for key, value in counts.items():
            dest[key] = dest.get(key, 0) + value


def _copy_counts(source: TreeNode, target: TreeNode) -> None:
    target.tensor_count = source.tensor_count
    target.elements = source.elements
    target.nbytes = source.nbytes
    target.by_kind = dict(source.by_kind)
    target.dtypes = dict(source.dtypes)
    target.roles = dict(source.roles)
