"""The server's side of the RFC 6962 log: appending, roots, proofs, canonical JSON.

Nothing here rehashes the log. Appending keeps the *frontier* (the roots of the
complete subtrees that make up the tree, largest first), so a root costs
O(log n). Each leaf's row keeps the hashes of every complete subtree that ends
at it (the leaf itself, and its parents while it is a right child), so any
aligned subtree hash is one row away and a proof reads O(log n) rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import rfc8785

from agentmessage.proof.verify import leaf_hash, node_hash

EMPTY_ROOT = hashlib.sha256(b"").digest()
NodeKey = tuple[int, int]  # (level, index): leaves [index << level, (index + 1) << level)
NodeLookup = Callable[[int, int], bytes]

_MAX_SAFE = 2**53


def canonical_json(document: Any, *, only: Iterable[str] | None = None) -> bytes:
    """RFC 8785 bytes of ``document``.

    orjson with sorted keys writes the same bytes as RFC 8785 for what events
    hold (strings, booleans, null, safe integers, objects whose keys have no
    character beyond the BMP) at a fiftieth of the cost; anything else (a float,
    a huge integer, an astral key) goes to the reference implementation.

    ``only`` names the members of an object ``document`` that need that check,
    when its maker vouches for the others (ASCII keys, strings or null).
    """
    if only is None:
        plain = _plain(document)
    else:
        plain = True
        for name in only:
            if not _plain(document[name]):
                plain = False
                break
    if plain:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return rfc8785.dumps(document)


def _plain(value: Any) -> bool:
    # Exact type checks, strings first: this runs for every event written.
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                return False
            if type(item) is not str and item is not None and not _plain(item):
                return False
        return True
    if kind is int:
        return bool(-_MAX_SAFE < value < _MAX_SAFE)
    if kind is list:
        return all(_plain(item) for item in value)
    return False


def append(frontier: list[bytes], size: int, leaf: bytes) -> bytes:
    """Add ``leaf`` (a leaf hash) as leaf number ``size``; update ``frontier`` in place.

    Returns the hashes of the complete subtrees that end at this leaf, level 0
    (the leaf) first: what the leaf's row stores.
    """
    completed = [leaf]
    node = leaf
    index = size
    while index & 1:
        node = node_hash(frontier.pop(), node)
        completed.append(node)
        index >>= 1
    frontier.append(node)
    return b"".join(completed)


def root(frontier: Iterable[bytes]) -> bytes:
    """The tree's root from its frontier (largest subtree first)."""
    nodes = list(frontier)
    if not nodes:
        return EMPTY_ROOT
    result = nodes[-1]
    for left in reversed(nodes[:-1]):
        result = node_hash(left, result)
    return result


def split_frontier(blob: bytes) -> list[bytes]:
    return [blob[i : i + 32] for i in range(0, len(blob), 32)]


def node_row(level: int, index: int) -> int:
    """The leaf whose row stores node (level, index): the last leaf under it."""
    return ((index + 1) << level) - 1


def _largest_power_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


class Prover:
    """RFC 9162 proofs over stored aligned-subtree hashes.

    Subtree roots are memoised: the proofs of many leaves of one tree share
    their upper right-edge subtrees, which are then hashed once. With
    ``combine`` left out of the hashing (``collect``), it only records which
    stored nodes a computation reads, so they can be fetched in one query.
    """

    def __init__(self, node: NodeLookup, combine: Callable[[bytes, bytes], bytes] = node_hash):
        self.node = node
        self.combine = combine
        self._memo: dict[tuple[int, int], bytes] = {}

    def subtree_root(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range the RFC's recursion produces (``lo`` aligned)."""
        width = hi - lo
        if width == 0:
            return EMPTY_ROOT
        if width & (width - 1) == 0:
            level = width.bit_length() - 1
            return self.node(level, lo >> level)
        found = self._memo.get((lo, hi))
        if found is None:
            k = _largest_power_below(width)
            found = self.combine(self.subtree_root(lo, lo + k), self.subtree_root(lo + k, hi))
            self._memo[(lo, hi)] = found
        return found

    def inclusion_path(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 2.1.3.1."""
        path: list[bytes] = []
        lo, hi, m = 0, size, index
        while hi - lo > 1:
            k = _largest_power_below(hi - lo)
            if m < k:
                path.append(self.subtree_root(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.subtree_root(lo, lo + k))
                lo, m = lo + k, m - k
        path.reverse()
        return path

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[0:second]) of RFC 9162 2.1.4.1 (empty when first is 0 or second)."""
        if first <= 0 or first >= second:
            return []
        proof: list[bytes] = []
        lo, hi, m, complete = 0, second, first, True
        while m != hi - lo:
            k = _largest_power_below(hi - lo)
            if m <= k:
                proof.append(self.subtree_root(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self.subtree_root(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            proof.append(self.subtree_root(lo, hi))
        proof.reverse()
        return proof


def subtree_root(lo: int, hi: int, node: NodeLookup) -> bytes:
    return Prover(node).subtree_root(lo, hi)


def inclusion_path(index: int, size: int, node: NodeLookup) -> list[bytes]:
    return Prover(node).inclusion_path(index, size)


def consistency_proof(first: int, second: int, node: NodeLookup) -> list[bytes]:
    return Prover(node).consistency_proof(first, second)


def nodes_needed(compute: Callable[[Prover], object]) -> set[NodeKey]:
    """The stored nodes ``compute`` reads, found without hashing anything, so that
    they can be fetched in one query before running it for real."""
    wanted: set[NodeKey] = set()

    def record(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return EMPTY_ROOT

    compute(Prover(record, combine=lambda left, _right: left))
    return wanted


__all__ = [
    "EMPTY_ROOT",
    "Prover",
    "append",
    "canonical_json",
    "consistency_proof",
    "inclusion_path",
    "leaf_hash",
    "node_hash",
    "node_row",
    "nodes_needed",
    "root",
    "split_frontier",
    "subtree_root",
]
