"""The RFC 6962 arithmetic against a from-scratch recomputation, for every small tree."""

from __future__ import annotations

import hashlib
import random
import string

import pytest
import rfc8785

from agentmessage.proof import merkle
from agentmessage.proof.verify import consistent, leaf_hash, node_hash, root_from_inclusion


def naive_root(leaves: list[bytes]) -> bytes:
    """MTH as RFC 6962 defines it, recursively."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(naive_root(leaves[:k]), naive_root(leaves[k:]))


def build(count: int) -> tuple[list[bytes], dict[int, bytes], list[list[bytes]]]:
    """Leaves, the stored row of each leaf, and the frontier after each append."""
    leaves = [leaf_hash(f"event {i}".encode()) for i in range(count)]
    frontier: list[bytes] = []
    rows: dict[int, bytes] = {}
    frontiers = [[]]
    for i, leaf in enumerate(leaves):
        rows[i] = merkle.append(frontier, i, leaf)
        frontiers.append(list(frontier))
    return leaves, rows, frontiers


def lookup(rows: dict[int, bytes]) -> merkle.NodeLookup:
    def node(level: int, index: int) -> bytes:
        row = rows[merkle.node_row(level, index)]
        return row[level * 32 : level * 32 + 32]

    return node


N = 70
LEAVES, ROWS, FRONTIERS = build(N)


def test_frontier_root_equals_recomputation_at_every_size() -> None:
    for size in range(N + 1):
        assert merkle.root(FRONTIERS[size]) == naive_root(LEAVES[:size])


def test_every_inclusion_proof_verifies_and_no_other_leaf_does() -> None:
    node = lookup(ROWS)
    for size in range(1, N + 1):
        expected = naive_root(LEAVES[:size])
        for index in range(size):
            path = merkle.inclusion_path(index, size, node)
            assert root_from_inclusion(index, size, LEAVES[index], path) == expected
            other = LEAVES[(index + 1) % size]
            if size > 1:
                assert root_from_inclusion(index, size, other, path) != expected
            if size > 2:
                moved = (index + 1) % size
                assert root_from_inclusion(moved, size, LEAVES[index], path) != expected


def test_every_consistency_proof_verifies_and_a_rewrite_does_not() -> None:
    node = lookup(ROWS)
    for second in range(1, N + 1):
        second_root = naive_root(LEAVES[:second])
        for first in range(0, second + 1):
            first_root = naive_root(LEAVES[:first])
            proof = merkle.consistency_proof(first, second, node)
            assert consistent(first, second, first_root, second_root, proof), (first, second)
            if 0 < first < second:
                rewritten = naive_root([leaf_hash(b"forged"), *LEAVES[1:first]])
                assert not consistent(first, second, rewritten, second_root, proof)


def test_placeholder_pass_names_exactly_the_rows_a_proof_reads() -> None:
    wanted = merkle.nodes_needed(lambda prover: prover.inclusion_path(37, 64))
    assert len(wanted) == 6  # one sibling per level of a 64-leaf tree


def _random_document(rng: random.Random, depth: int = 0) -> object:
    alphabet = string.printable + "éñ€\u2028\u0000\u001f\U0001f600\ue000"
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return "".join(rng.choices(alphabet, k=rng.randrange(12)))
    if kind == 1:
        return rng.choice([True, False, None])
    if kind == 2:
        return rng.randrange(-(2**60), 2**60)
    if kind == 3:
        return rng.random() * 10 ** rng.randrange(-30, 30)
    if kind in (4, 5):
        return {
            "".join(rng.choices(alphabet, k=rng.randrange(5))): _random_document(rng, depth + 1)
            for _ in range(rng.randrange(5))
        }
    return [_random_document(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_canonical_json_is_rfc8785_for_any_document() -> None:
    rng = random.Random(8785)
    for _ in range(3000):
        document = _random_document(rng)
        try:
            expected = rfc8785.dumps(document)
        except rfc8785.CanonicalizationError:
            with pytest.raises(rfc8785.CanonicalizationError):
                merkle.canonical_json(document)
            continue
        assert merkle.canonical_json(document) == expected
