"""Measure your own machine and share it: `wattcounts measure` (one configuration from flags, measured with the
pipeline's protocol, ending in a checked bundle, `machine`) and `wattcounts bundle` (a sweep folder as a bundle,
`convert`). Above `measure`, `meters`, `submissions` and `model`, which it joins; nothing below imports it."""
