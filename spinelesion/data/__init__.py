"""Datasets: synthetic phantoms (``spinelesion.data.phantoms``) and adapters for public datasets."""
