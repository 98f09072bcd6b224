"""core.logbook.merkle against an independent, deliberately naive implementation of the
recursive definitions of RFC 9162 §2.1 (MTH, PATH, PROOF/SUBPROOF over a list of leaves), the
published RFC 6962 test vectors, and tampered proofs."""

from __future__ import annotations

import ast
import hashlib
import random
import subprocess
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import pytest

from archive_service.core.logbook import merkle
from archive_service.core.logbook.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MemoryTree,
    ProofError,
    append_nodes,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    node_hash,
    root_hash,
    root_nodes,
    verify_consistency,
    verify_inclusion,
)

# --- the independent reference: RFC 9162 §2.1, read literally --------------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Reference:
    """MTH, PATH and PROOF of RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1 over the leaf *data*,
    recursing on list slices; MTH is memoised on (start, end) so that large sizes stay quick."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        self.mth = lru_cache(maxsize=None)(self._mth)

    @staticmethod
    def _k(n: int) -> int:
        k = 1
        while k * 2 < n:
            k *= 2
        return k

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return _h(b"")
        if n == 1:
            return _h(b"\x00" + self.leaves[start])
        k = self._k(n)
        return _h(b"\x01" + self.mth(start, start + k) + self.mth(start + k, end))

    def root(self, n: int) -> bytes:
        return self.mth(0, n)

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = self._k(n)
        if m < k:
            return [*self.path(m, start, start + k), self.mth(start + k, end)]
        return [*self.path(m - k, start + k, end), self.mth(start, start + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return self.subproof(m, 0, n, True)

    def subproof(self, m: int, start: int, end: int, b: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if b else [self.mth(start, end)]
        k = self._k(n)
        if m <= k:
            return [*self.subproof(m, start, start + k, b), self.mth(start + k, end)]
        return [*self.subproof(m - k, start + k, end, False), self.mth(start, start + k)]


def leaf_data(n: int) -> list[bytes]:
    return [f"entry {i}".encode() * (i % 3 + 1) for i in range(n)]


def tree_of(n: int) -> tuple[MemoryTree, Reference]:
    data = leaf_data(n)
    tree = MemoryTree()
    for d in data:
        tree.append(leaf_hash(d))
    return tree, Reference(data)


_POWERS = [1 << p for p in range(11)]
SIZES = sorted(
    {0, 1, 2, 3}
    | {s + d for s in _POWERS for d in (-1, 0, 1) if s + d >= 0}
    | set(random.Random(9162).sample(range(4, 1100), 12))
)
_BIG = 1100
_TREE, _REF = tree_of(_BIG)  # every size up to _BIG is a prefix of this one tree


# --- known answers: transparency-dev/merkle testonly (RFC 6962 test vectors) -----------------

VECTOR_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
VECTOR_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
VECTOR_NODES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]


def test_known_answer_roots_for_sizes_0_to_8() -> None:
    tree = MemoryTree()
    assert tree.root().hex() == VECTOR_ROOTS[0]
    for size, data in enumerate(VECTOR_LEAVES, start=1):
        tree.append(leaf_hash(data))
        assert tree.root().hex() == VECTOR_ROOTS[size]
        assert Reference(VECTOR_LEAVES).root(size).hex() == VECTOR_ROOTS[size]


def test_known_answer_node_hashes() -> None:
    tree = MemoryTree([leaf_hash(d) for d in VECTOR_LEAVES])
    for level, row in enumerate(VECTOR_NODES):
        assert [tree.subtree(level, i).hex() for i in range(len(row))] == row


def test_hash_constants_and_domain_separation() -> None:
    assert HASH_SIZE == 32
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert root_hash(0, _TREE.subtree) == EMPTY_ROOT
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    # A leaf can never pass for an interior node with the same bytes.
    assert leaf_hash(b"a" * 32 + b"b" * 32) != node_hash(b"a" * 32, b"b" * 32)


# --- roots and proofs against the reference --------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_root_matches_reference(size: int) -> None:
    assert root_hash(size, _TREE.subtree) == _REF.root(size)
    assert _TREE.root(size) == _REF.root(size)


@pytest.mark.parametrize("size", [s for s in SIZES if s > 0])
def test_inclusion_proofs_match_reference_for_every_index(size: int) -> None:
    root = _REF.root(size)
    for index in range(size):
        proof = inclusion_proof(index, size, _TREE.subtree)
        assert proof == _REF.path(index, 0, size)
        verify_inclusion(leaf_hash(_REF.leaves[index]), index, size, proof, root)


@pytest.mark.parametrize("size2", range(65))
def test_consistency_proofs_match_reference_for_every_pair(size2: int) -> None:
    for size1 in range(size2 + 1):
        proof = consistency_proof(size1, size2, _TREE.subtree)
        expected = [] if size1 == 0 else _REF.proof(size1, size2)
        assert proof == expected, (size1, size2)
        verify_consistency(size1, size2, _REF.root(size1), _REF.root(size2), proof)


@pytest.mark.parametrize("size2", [s for s in SIZES if s > 64])
def test_consistency_proofs_match_reference_for_large_trees(size2: int) -> None:
    rng = random.Random(size2)
    firsts = {1, 2, 3, size2 - 1, size2, size2 // 2} | set(rng.sample(range(1, size2), 20))
    firsts |= {p + d for p in _POWERS for d in (-1, 0, 1) if 0 < p + d <= size2}
    for size1 in sorted(firsts):
        proof = consistency_proof(size1, size2, _TREE.subtree)
        assert proof == _REF.proof(size1, size2), (size1, size2)
        verify_consistency(size1, size2, _REF.root(size1), _REF.root(size2), proof)


# --- tampering: every proof fails closed ---------------------------------------------------


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8 % len(out)] ^= 1 << bit % 8
    return bytes(out)


def _mutations(proof: list[bytes], seed: int) -> list[tuple[str, list[bytes]]]:
    rng = random.Random(seed)
    out: list[tuple[str, list[bytes]]] = []
    for i in range(len(proof)):
        bit = rng.randrange(HASH_SIZE * 8)
        out.append(
            (f"bit {bit} of element {i}", [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]])
        )
        out.append((f"element {i} removed", proof[:i] + proof[i + 1 :]))
        out.append((f"element {i} duplicated", [*proof[: i + 1], proof[i], *proof[i + 1 :]]))
    extra = rng.randbytes(HASH_SIZE)
    out.append(("element prepended", [extra, *proof]))
    out.append(("element appended", [*proof, extra]))
    if len(proof) > 1:
        out.append(("elements reversed", proof[::-1]))
    return out


@pytest.mark.parametrize("size", [*range(1, 34), 63, 64, 65, 100, 127, 128, 129])
def test_altered_inclusion_proofs_are_rejected(size: int) -> None:
    root = _REF.root(size)
    for index in range(size):
        leaf = leaf_hash(_REF.leaves[index])
        proof = inclusion_proof(index, size, _TREE.subtree)
        for what, bad in _mutations(proof, size * 1000 + index):
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, bad, root)
                pytest.fail(f"accepted with {what}")
        with pytest.raises(ProofError):
            verify_inclusion(_flip(leaf, index), index, size, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof, _flip(root, index))
        for wrong_index in {index - 1, index + 1, size, -1, index ^ 1} - {index}:
            with pytest.raises(ProofError):
                verify_inclusion(leaf, wrong_index, size, proof, root)
        for wrong_size in {size - 1, size + 1, size * 2, 0} - {size}:
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, wrong_size, proof, _REF.root(min(wrong_size, _BIG)))


@pytest.mark.parametrize("size2", [*range(1, 34), 64, 65, 100])
def test_altered_consistency_proofs_are_rejected(size2: int) -> None:
    root2 = _REF.root(size2)
    for size1 in range(1, size2):
        root1 = _REF.root(size1)
        proof = consistency_proof(size1, size2, _TREE.subtree)
        for what, bad in _mutations(proof, size2 * 1000 + size1):
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, root1, root2, bad)
                pytest.fail(f"accepted with {what}")
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, root2, root1, proof)  # roots swapped
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, _flip(root1, size1), root2, proof)
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, root1, _flip(root2, size2), proof)
        for w1, w2 in {(size1 - 1, size2), (size1 + 1, size2), (size1, size2 + 1), (size2, size1)}:
            if (w1, w2) != (size1, size2) and 0 <= w1 and w2 <= _BIG:
                with pytest.raises(ProofError):
                    verify_consistency(w1, w2, _REF.root(max(w1, 0)), _REF.root(w2), proof)
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, root1, root2, [])


def test_trivial_consistency_cases() -> None:
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, _REF.root(5), [])
    verify_consistency(5, 5, _REF.root(5), _REF.root(5), [])
    with pytest.raises(ProofError):
        verify_consistency(0, 5, _REF.root(1), _REF.root(5), [])  # size 0 has one root
    with pytest.raises(ProofError) as err:
        verify_consistency(5, 5, _REF.root(5), _REF.root(4), [])
    assert err.value.expected == _REF.root(5)
    assert err.value.found == _REF.root(4)
    with pytest.raises(ProofError):
        verify_consistency(5, 5, _REF.root(5), _REF.root(5), [_REF.root(5)])
    with pytest.raises(ProofError):
        verify_consistency(6, 5, _REF.root(6), _REF.root(5), [])


def test_proof_error_names_both_roots() -> None:
    proof = inclusion_proof(3, 10, _TREE.subtree)
    wrong_root = _REF.root(11)
    with pytest.raises(ProofError) as err:
        verify_inclusion(leaf_hash(_REF.leaves[3]), 3, 10, proof, wrong_root)
    assert err.value.expected == wrong_root
    assert err.value.found == _REF.root(10)
    assert isinstance(err.value, ValueError)


def test_malformed_inputs_are_proof_errors() -> None:
    leaf, root = leaf_hash(_REF.leaves[0]), _REF.root(4)
    proof = inclusion_proof(0, 4, _TREE.subtree)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, 0, 4, [proof[0][:31], proof[1]], root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf[:31], 0, 4, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, 0, 4, proof, root + b"\x00")
    with pytest.raises(ProofError):
        verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT)


def test_provers_check_their_preconditions() -> None:
    for index, size in [(0, 0), (5, 5), (-1, 5)]:
        with pytest.raises(ValueError, match="index"):
            inclusion_proof(index, size, _TREE.subtree)
    for size1, size2 in [(6, 5), (-1, 5)]:
        with pytest.raises(ValueError, match="size1"):
            consistency_proof(size1, size2, _TREE.subtree)
    with pytest.raises(ValueError):
        root_hash(-1, _TREE.subtree)
    with pytest.raises(ValueError):
        _TREE.inclusion_proof(0, _BIG + 1)


# --- append_nodes ---------------------------------------------------------------------------


def _recording(
    stored: dict[tuple[int, int], bytes], reads: list[tuple[int, int]]
) -> Callable[[int, int], bytes]:
    """A reader of the nodes in ``stored`` only (KeyError otherwise), logging each read."""

    def read(level: int, index: int) -> bytes:
        reads.append((level, index))
        return stored[level, index]

    return read


@pytest.mark.parametrize("batches", [[1] * 40, [3, 5, 8, 1, 16, 2, 7], [64, 1, 63, 200], [1025]])
def test_append_in_batches_equals_leaf_by_leaf_and_reference(batches: list[int]) -> None:
    total = sum(batches)
    leaves = [leaf_hash(d) for d in _REF.leaves[:total]]
    stored: dict[tuple[int, int], bytes] = {}
    size = 0
    for count in batches:
        reads: list[tuple[int, int]] = []
        nodes = append_nodes(size, leaves[size : size + count], _recording(stored, reads))
        # Children before parents, each node new, each read an existing node, read once.
        for level, index, _ in nodes:
            assert (level, index) not in stored
            if level:
                assert (level - 1, 2 * index) in stored
                assert (level - 1, 2 * index + 1) in stored
            stored[level, index] = _
        assert len(reads) == len(set(reads)) <= max(size, 1).bit_length()
        assert sum(1 for level, _, _ in nodes if level == 0) == count
        size += count
        assert root_hash(size, lambda lv, i: stored[lv, i]) == _REF.root(size)
    # Exactly the perfect subtrees of a tree of `total` leaves: 2 * total - popcount(total).
    assert len(stored) == 2 * total - bin(total).count("1")
    for (level, index), value in stored.items():
        assert value == _TREE.subtree(level, index)
        assert value == _REF.mth(index << level, (index + 1) << level)


def test_memory_tree_extend_equals_append() -> None:
    one_by_one, batched = MemoryTree(), MemoryTree()
    leaves = [leaf_hash(d) for d in _REF.leaves[:777]]
    for h in leaves:
        one_by_one.append(h)
    for start, stop in [(0, 1), (1, 2), (2, 100), (100, 101), (101, 777)]:
        batched.extend(leaves[start:stop])
    assert batched.size == one_by_one.size == 777
    for level in range(10):
        for index in range(777 >> level):
            assert batched.subtree(level, index) == one_by_one.subtree(level, index)
    assert batched.root() == _REF.root(777)
    assert MemoryTree(leaves).root() == _REF.root(777)


def test_memory_tree_api() -> None:
    tree = MemoryTree()
    assert tree.size == 0
    assert tree.root() == EMPTY_ROOT
    assert tree.append(leaf_hash(b"a")) == 0
    assert tree.append(leaf_hash(b"b")) == 1
    assert tree.size == 2
    assert tree.inclusion_proof(0) == [leaf_hash(b"b")]
    assert tree.consistency_proof(1) == [leaf_hash(b"b")]
    assert tree.consistency_proof(1, 1) == []
    with pytest.raises(ValueError):
        tree.append(b"short")
    with pytest.raises(IndexError):
        tree.subtree(1, 1)


# --- cost: O(log n) reads ------------------------------------------------------------------


def _counting_reader(size: int) -> tuple[Callable[[int, int], bytes], list[int]]:
    """A synthetic tree (hashes made up, not consistent): only the reads are counted, and
    every read must be of a perfect subtree inside the tree."""
    count = [0]

    def read(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, (level, index, size)
        count[0] += 1
        return hashlib.sha256(f"{level}/{index}".encode()).digest()

    return read, count


@pytest.mark.parametrize("size", [1_000_000, 2**20, 2**20 + 1, 2**31 - 1, 10**12 + 7])
def test_proofs_make_logarithmic_reads(size: int) -> None:
    bound = 2 * size.bit_length()
    rng = random.Random(size)
    for index in [0, 1, size // 2, size - 2, size - 1, *rng.sample(range(size), 30)]:
        read, count = _counting_reader(size)
        proof = inclusion_proof(index, size, read)
        assert count[0] <= bound
        assert len(proof) <= size.bit_length()
    for size1 in [1, 2, 3, size // 2, size - 1, *rng.sample(range(1, size), 30)]:
        read, count = _counting_reader(size)
        consistency_proof(size1, size, read)
        assert count[0] <= bound
    read, count = _counting_reader(size)
    root_hash(size, read)
    assert count[0] == bin(size).count("1")


def test_node_lists_let_a_reader_prefetch_exactly_what_is_read() -> None:
    """With only the listed nodes available, every proof and root comes out the same."""
    rng = random.Random(7)

    def only(nodes: list[tuple[int, int]]) -> Callable[[int, int], bytes]:
        subset = {n: _TREE.subtree(*n) for n in nodes}
        return lambda level, i: subset[level, i]

    for size in [1, 2, 3, 7, 8, 9, 100, 1024, 1025, _BIG]:
        assert root_hash(size, only(root_nodes(size))) == _REF.root(size)
        for index in {0, size - 1, rng.randrange(size)}:
            nodes = inclusion_proof_nodes(index, size)
            assert inclusion_proof(index, size, only(nodes)) == _REF.path(index, 0, size)
        for size1 in {1, size, rng.randrange(1, size + 1)}:
            nodes = consistency_proof_nodes(size1, size)
            assert consistency_proof(size1, size, only(nodes)) == _REF.proof(size1, size)


# --- merkle.py runs on python3 alone ----------------------------------------------------------


def test_standalone_modules_import_only_the_standard_library() -> None:
    """canonical.py and merkle.py go into evidence bundles: an auditor runs them with python3
    and nothing else, so they may import the standard library only (no project modules)."""
    package = Path(merkle.__file__).parent
    for name in ("merkle.py", "canonical.py"):
        tree = ast.parse((package / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{name}: relative import"
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__", f"{name}: {module}"


def test_standalone_modules_run_without_site_packages(tmp_path: Path) -> None:
    package = Path(merkle.__file__).parent
    for name in ("merkle.py", "canonical.py"):
        (tmp_path / name).write_bytes((package / name).read_bytes())
    script = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import merkle, canonical\n"
        "leaves = [merkle.leaf_hash(canonical.canonical_json({'i': i})) for i in range(9)]\n"
        "t = merkle.MemoryTree(leaves)\n"
        "merkle.verify_consistency(4, 9, t.root(4), t.root(), t.consistency_proof(4))\n"
        "print(t.root().hex())\n"
    )
    # -I: isolated (no user site, no PYTHON* variables); -S: no site-packages at all.
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    expected = MemoryTree([leaf_hash(f'{{"i":{i}}}'.encode()) for i in range(9)]).root()
    assert out.stdout.strip() == expected.hex()
