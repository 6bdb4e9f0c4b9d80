"""A small, safe expression language for derived features: parse, type-check, evaluate.

Text is parsed by Python's own parser (`ast.parse(mode="eval")`) and only a whitelist of node
kinds is accepted; nothing is ever compiled or evaluated by Python. Evaluation is vectorized
with numpy over whole columns (float64 with NaN for missing numbers, object arrays of `str` with
NaN for missing strings), so it runs the same in the trainer and in the model server, which has
numpy but no pyarrow. The reference is docs/features.md.
"""

from modelyard.expressions.evaluate import evaluate
from modelyard.expressions.parse import (
    MAX_DEPTH,
    MAX_NODES,
    NUMBER,
    STRING,
    ExpressionError,
    Kind,
    Node,
    columns_of,
    infer_kind,
    parse,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "NUMBER",
    "STRING",
    "ExpressionError",
    "Kind",
    "Node",
    "columns_of",
    "evaluate",
    "infer_kind",
    "parse",
]
