"""The engine: data, backbones, embeddings, training and the victim's private side.

Owns everything that turns images into trained models: datasets and query pools (`data`), the
backbone registry (`zoo`), the frozen-feature cache (`embed`, `cache`), training loops and recipes,
and `TrainedVictim`. It imports only `fmsteal.errors`, `fmsteal.cancel`, `fmsteal.registry`,
`fmsteal.settings` and `fmsteal.evaluation.metrics`; nothing here knows about attacks, jobs or the UI.
"""
