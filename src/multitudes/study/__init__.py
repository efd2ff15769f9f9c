"""The scaling study: its plan of cells, the runner, the inference-time axis, the summary and its
figures."""
