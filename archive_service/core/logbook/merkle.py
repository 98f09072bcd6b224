"""Merkle tree hashing and proofs of RFC 9162 §2.1 (the RFC 6962 tree), over SHA-256.

The tree is read through a :data:`SubtreeReader`: a callable giving the hash of a *perfect*
subtree (2**level leaves, aligned on a multiple of 2**level). A log that stores those nodes as
it grows (in memory, :class:`MemoryTree`; in a database table, the service layer) answers every
question here with O(log n) reads: a root, an inclusion proof, a consistency proof.

This module imports the standard library only: it is shipped inside evidence bundles so that an
auditor can check proofs with ``python3`` alone, without this project or any package installed.

Hashes: leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right) (RFC 9162 §2.1.1);
the root of the empty tree is SHA-256 of the empty string.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MemoryTree",
    "ProofError",
    "SubtreeReader",
    "append_nodes",
    "consistency_proof",
    "consistency_proof_nodes",
    "inclusion_proof",
    "inclusion_proof_nodes",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "root_nodes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: ``(level, index) -> hash`` of the perfect subtree covering leaves
#: ``[index * 2**level, (index + 1) * 2**level)``; level 0 gives leaf hashes.
SubtreeReader = Callable[[int, int], bytes]

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof that does not hold. ``expected`` and ``found`` carry both sides of a failed
    comparison (e.g. the trusted root and the root the proof leads to), or None when the
    failure is structural (wrong length, out-of-range index)."""

    def __init__(
        self, message: str, *, expected: bytes | None = None, found: bytes | None = None
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.found = found


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2): RFC 9162's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_hash(begin: int, count: int, subtree: SubtreeReader) -> bytes:
    """MTH of the ``count`` leaves from ``begin``, where ``begin`` is a multiple of a power of
    two >= ``count`` (true of every node of the RFC 9162 tree): the perfect subtrees given by
    the binary digits of ``count``, largest first, folded from the right. popcount(count)
    reads."""
    parts: list[bytes] = []
    offset = begin
    for level in range(count.bit_length() - 1, -1, -1):
        if count >> level & 1:
            parts.append(subtree(level, offset >> level))
            offset += 1 << level
    acc = parts.pop()
    while parts:
        acc = node_hash(parts.pop(), acc)
    return acc


def root_hash(size: int, subtree: SubtreeReader) -> bytes:
    """MTH of the first ``size`` leaves (RFC 9162 §2.1.1); EMPTY_ROOT for size 0."""
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, subtree)


def inclusion_proof(index: int, size: int, subtree: SubtreeReader) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, leaf side first. Requires
    0 <= index < size.

    Walks from the root down to the leaf: at each node the sibling of the branch taken goes
    into the proof. Only the first left turn can leave a ragged (non-perfect) right sibling;
    below it every sibling is one perfect subtree, so the proof costs O(log size) reads.
    """
    if not 0 <= index < size:
        raise ValueError(f"inclusion proof needs 0 <= index < size, got index {index}, size {size}")
    path: list[bytes] = []
    begin, count = 0, size
    while count > 1:
        k = _split(count)
        if index - begin < k:
            path.append(_range_hash(begin + k, count - k, subtree))
            count = k
        else:
            path.append(subtree(k.bit_length() - 1, begin // k))
            begin, count = begin + k, count - k
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, subtree: SubtreeReader) -> list[bytes]:
    """PROOF(size1, D[0:size2]) of RFC 9162 §2.1.4.1, deepest node first. Requires
    0 <= size1 <= size2; the proof is empty when size1 is 0 or equal to size2.

    SUBPROOF unrolled: descend from the root while the old tree ends inside the current node,
    collecting the sibling of each branch taken, then the node where the old tree ends (unless
    that node is the whole old tree, which the verifier already has).
    """
    if not 0 <= size1 <= size2:
        raise ValueError(f"consistency proof needs 0 <= size1 <= size2, got {size1}, {size2}")
    if size1 == 0 or size1 == size2:
        return []
    proof: list[bytes] = []
    begin, count, m, whole_old_tree = 0, size2, size1, True
    while m != count:
        k = _split(count)
        if m <= k:
            proof.append(_range_hash(begin + k, count - k, subtree))
            count = k
        else:
            proof.append(subtree(k.bit_length() - 1, begin // k))
            begin, count, m = begin + k, count - k, m - k
            whole_old_tree = False
    if not whole_old_tree:
        # After a right turn the old tree cannot end where the node does until a later left
        # turn, into a perfect subtree: one read.
        proof.append(subtree(count.bit_length() - 1, begin // count))
    proof.reverse()
    return proof


def _nodes_read(compute: Callable[[SubtreeReader], object]) -> list[tuple[int, int]]:
    reads: list[tuple[int, int]] = []

    def record(level: int, index: int) -> bytes:
        reads.append((level, index))
        return EMPTY_ROOT  # a placeholder: only the coordinates matter

    compute(record)
    return reads


def root_nodes(size: int) -> list[tuple[int, int]]:
    """The ``(level, index)`` subtrees :func:`root_hash` reads, so that a database-backed
    reader can fetch them in one query before calling it."""
    return _nodes_read(lambda read: root_hash(size, read))


def inclusion_proof_nodes(index: int, size: int) -> list[tuple[int, int]]:
    """The ``(level, index)`` subtrees :func:`inclusion_proof` reads (at most 2 log2 size)."""
    return _nodes_read(lambda read: inclusion_proof(index, size, read))


def consistency_proof_nodes(size1: int, size2: int) -> list[tuple[int, int]]:
    """The ``(level, index)`` subtrees :func:`consistency_proof` reads (at most 2 log2 size2)."""
    return _nodes_read(lambda read: consistency_proof(size1, size2, read))


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte hash")


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: check that the leaf hash ``leaf`` sits at ``index`` in the tree of
    ``size`` leaves whose root is ``root``. Returns None; raises ProofError otherwise."""
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root")
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
        if sn == 0:
            raise ProofError(f"inclusion proof has {len(proof)} elements, more than the path")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof has {len(proof)} elements, fewer than the path")
    if r != root:
        raise ProofError("inclusion proof leads to another root", expected=root, found=r)


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: check that the tree of ``size1`` leaves with root ``root1`` is a
    prefix of the tree of ``size2`` leaves with root ``root2``. Returns None; raises ProofError
    otherwise. Size 0 is consistent with everything, provided ``root1`` is EMPTY_ROOT."""
    _check_hash(root1, "first root")
    _check_hash(root2, "second root")
    if not 0 <= size1 <= size2:
        raise ProofError(f"consistency needs 0 <= size1 <= size2, got {size1}, {size2}")
    if size1 == 0 or size1 == size2:
        if proof:
            raise ProofError(f"consistency proof between {size1} and {size2} must be empty")
        if size1 == 0:
            if root1 != EMPTY_ROOT:
                raise ProofError("root of the empty tree", expected=EMPTY_ROOT, found=root1)
        elif root1 != root2:
            raise ProofError("same size, different roots", expected=root1, found=root2)
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # the old tree is a perfect subtree: the verifier has it
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof has {len(proof)} elements, more than the path")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof has {len(proof)} elements, fewer than the path")
    if fr != root1:
        raise ProofError("consistency proof leads to another first root", expected=root1, found=fr)
    if sr != root2:
        raise ProofError("consistency proof leads to another second root", expected=root2, found=sr)


def append_nodes(
    size: int, leaves: Sequence[bytes], subtree: SubtreeReader
) -> list[tuple[int, int, bytes]]:
    """The perfect-subtree nodes ``(level, index, hash)`` completed by appending the leaf
    hashes ``leaves`` to a tree of ``size`` leaves: one per new leaf at level 0, then every
    parent whose right child is new, children before parents.

    A new node with an odd index pairs with its left sibling: made earlier in this batch (kept
    in ``pending``) or already stored (read through ``subtree``, at most once per level). That
    is about two nodes per leaf and at most log2(size) reads per call.
    """
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")
    nodes: list[tuple[int, int, bytes]] = []
    pending: dict[int, bytes] = {}  # level -> hash of the newest even-index node of this batch
    for offset, h in enumerate(leaves):
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash {offset} is {len(h)} bytes, not {HASH_SIZE}")
        index, level = size + offset, 0
        nodes.append((0, index, h))
        while index & 1:
            left = pending.pop(level, None)
            if left is None:
                left = subtree(level, index - 1)
            h = node_hash(left, h)
            index >>= 1
            level += 1
            nodes.append((level, index, h))
        pending[level] = h
    return nodes


class MemoryTree:
    """An append-only log held in memory: every perfect-subtree node, level by level.

    Used by tests and benchmarks, and as a scratch tree (e.g. to rebuild a log from its leaves
    and compare roots). Memory: about two hashes per leaf.
    """

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        if leaf_hashes:
            self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash; return its index."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash is {len(leaf_hash)} bytes, not {HASH_SIZE}")
        levels = self._levels
        index = len(levels[0])
        levels[0].append(leaf_hash)
        i, level, h = index, 0, leaf_hash
        while i & 1:
            h = node_hash(levels[level][i - 1], h)
            level += 1
            i >>= 1
            if level == len(levels):
                levels.append([])
            levels[level].append(h)
        return index

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        """Append many leaf hashes at once (through :func:`append_nodes`)."""
        levels = self._levels
        for level, index, h in append_nodes(self.size, leaf_hashes, self.subtree):
            if level == len(levels):
                levels.append([])
            row = levels[level]
            if index != len(row):  # pragma: no cover - append_nodes yields in order
                raise AssertionError("append_nodes yielded a node out of order")
            row.append(h)

    def subtree(self, level: int, index: int) -> bytes:
        """The :data:`SubtreeReader` of this tree."""
        if level < 0 or index < 0:
            raise IndexError(f"no subtree at level {level}, index {index}")
        return self._levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        return root_hash(self._size_arg(size), self.subtree)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self._size_arg(size), self.subtree)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        return consistency_proof(size1, self._size_arg(size2), self.subtree)

    def _size_arg(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} is outside 0..{self.size}")
        return size
