"""Inference: checkpoint -> label map on each input's exact grid; batch runs over folders."""
