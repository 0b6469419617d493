"""Synthetic spine phantoms (CT, T1, T2) with exact labels and measurement truth.

``make_phantom`` draws a case from a seed and renders it; ``write_dataset`` writes an MSD-style
folder (imagesTr, labelsTr, dataset.json, truth/). Modules: ``anatomy`` (column, vertebra shapes),
``context`` and ``junctions`` (surroundings; atlas, axis, skull base, S1 and sacrum of context phantoms),
``pathology`` (lesions, epidural extension, collapse), ``imaging`` (grid, intensities, noise),
``truth`` (the measurement record), ``phantom`` (draw and render), ``dataset`` (writing).
"""

from spinelesion.data.phantoms.dataset import write_dataset
from spinelesion.data.phantoms.phantom import Phantom, draw_params, make_phantom, render_phantom

__all__ = ["Phantom", "draw_params", "make_phantom", "render_phantom", "write_dataset"]
