"""Victim sources: where the model under attack comes from, as a registry of factories.

A source turns a spec string (`zoo:tf_efficientnet_lite0`, `file:model.onnx`, `url:https://...`,
`space:owner/name`, `api:module:function`; parsed once by `fmsteal.registry.split_prefix`) into a
`VictimHandle`: a function from [0, 1] images to class probabilities and the number of classes.
The attack wraps it in a `BlackBoxVictim`; nothing here is visible to the thief.
"""
