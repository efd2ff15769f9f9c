"""Entropy coding with the members' predictions: the range coder, .mtz archives, and online
(prequential) coding."""
