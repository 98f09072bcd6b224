"""The tamper-evident logbook, pure part: canonical entry bytes (RFC 8785), the Merkle tree
and its proofs (RFC 9162 §2.1), and signed checkpoints (C2SP tlog-checkpoint + signed-note).

``canonical`` and ``merkle`` import the standard library only, so that evidence bundles can
ship them for auditors to run with ``python3`` alone; ``checkpoint`` uses ``cryptography``.
"""

from archive_service.core.logbook.canonical import canonical_json
from archive_service.core.logbook.checkpoint import (
    Checkpoint,
    CheckpointError,
    NoteSignature,
    key_id,
    parse_checkpoint,
    parse_signed_note,
    sign_checkpoint,
    verify_checkpoint,
)
from archive_service.core.logbook.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MemoryTree,
    ProofError,
    SubtreeReader,
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

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Checkpoint",
    "CheckpointError",
    "MemoryTree",
    "NoteSignature",
    "ProofError",
    "SubtreeReader",
    "append_nodes",
    "canonical_json",
    "consistency_proof",
    "consistency_proof_nodes",
    "inclusion_proof",
    "inclusion_proof_nodes",
    "key_id",
    "leaf_hash",
    "node_hash",
    "parse_checkpoint",
    "parse_signed_note",
    "root_hash",
    "root_nodes",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
]
