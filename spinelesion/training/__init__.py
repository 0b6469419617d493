"""Training: the validated YAML config, the training loop, its loss and its validation.

- :mod:`.config`: typed, frozen views over a YAML config, validated on load (every key in configs/README.md);
- :mod:`.loop`: ``train(config=..., resume=...)`` (``spinelesion train``, ``scripts/train.py``);
- :mod:`.losses`: Dice + cross-entropy that ignores classes a dataset does not annotate;
- :mod:`.validation`: sliding-window validation with Dice and lesion-wise detection.
"""
