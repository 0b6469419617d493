"""Images synthesised from tissue maps on the fly (SynthSeg-style domain randomisation).

A *tissue map* is an integer map of tissue classes (:mod:`spinelesion.synthesis.tissues`): bone
cortex and marrow, disc, CSF, cord, fat, muscle, organs, gas, metal, lesions, benign mimics. It
holds more classes than the output label schema, so that the network sees the surroundings of a
real scan (ribs and pelvis are bone but not vertebra; a haemangioma is marrow, not lesion).
:func:`~spinelesion.synthesis.appearance.synthesize` draws a new appearance for every case:
per-tissue intensities (CT tables, MR contrasts or random), texture, resolution and slice
thickness, bias field, gamma, noise, ghosting and clipping, as torch operations that run where
the batch is (the GPU in training). :class:`~spinelesion.synthesis.transform.SynthesizeImaged`
wraps it as a seeded MONAI transform.

Modules: ``tissues`` (classes and families), ``settings`` (ranges; no torch), ``appearance``
(torch), ``lesions`` (lesions inserted into training patches), ``transform`` (MONAI wrapper).
The package imports nothing on its own, so the training config can read the settings without torch.
"""
