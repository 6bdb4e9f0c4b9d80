"""A small, safe expression language for derived features: parse, type-check, evaluate.

Text is parsed by Python's own parser (`ast.parse(mode="eval")`) and only a whitelist of node
kinds is accepted; nothing is ever compiled or evaluated by Python. Evaluation is vectorized
with numpy over whole columns (float64 with NaN for missing numbers, object arrays of `str` with
NaN for missing strings), so it runs the same in the trainer and in the model server, which has
numpy but no pyarrow. The reference is docs/features.md.

parse.py needs only the standard library, so that the API models (in the operator image, which
has no numpy) check expressions; evaluate.py needs numpy.
"""
