"""Testing helpers for code built on microgradrnn.

:mod:`microgradrnn.testing.strategies` holds hypothesis strategies (safe arrays, shapes,
tensors, random expression DAGs with shared nodes, RNN configurations);
:mod:`microgradrnn.testing.op_cases` holds ``OP_CASES``, the table of operations that drives the
per-op property tests. Both need hypothesis (``pip install "microgradrnn[test]"``), so they are
imported explicitly, never from here::

    from microgradrnn.testing.strategies import float_arrays
    from microgradrnn.testing.op_cases import OP_CASES
"""
