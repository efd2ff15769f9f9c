"""Generations: the genetic operators, who dies and who is born, and the lineage that records it."""
