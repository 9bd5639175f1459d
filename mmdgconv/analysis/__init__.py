"""Turning trained checkpoints into the papers' result tables."""
from .results_table import (COLUMNS, ResultsTableError, Row, build_rows,
                            evaluate, measure_costs, to_csv, to_json,
                            to_markdown)

__all__ = [
    'COLUMNS', 'ResultsTableError', 'Row', 'build_rows', 'evaluate',
    'measure_costs', 'to_csv', 'to_json', 'to_markdown'
]
