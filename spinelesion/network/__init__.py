"""The network and what travels with it: the MONAI network factory, checkpoints, preprocessing.

- :mod:`.factory`: a MONAI 3D network by name (``unet``, ``dynunet``, ``segresnet``; the one registry);
- :mod:`.checkpoint`: safetensors checkpoints with their JSON record, and training resume state;
- :mod:`.transforms`: preprocessing shared by training and inference (orientation, spacing,
  intensity) and the training crops/augmentations.
"""
