"""Victim sources: where the model under attack comes from, as a registry of factories.

A source turns a spec string (`api:module:function`, `file:model.onnx`, `url:https://...`,
`space:owner/name`; parsed once by `fmsteal.registry.split_prefix`; a spec without a known prefix
is left to the `zoo` source, a backbone trained here) into a `VictimHandle`: a function from
[0, 1] images to class probabilities, the number of classes, a description and `close()`.
Whatever a source answers (probabilities, logits or labels) becomes probabilities by one rule
(`answers`); remote sources add batching, a rate limit, retries and an answer log (`remote`, `log`).
`resolve_victim` accepts a handle, a spec or a plain callable; `options` makes the CLI's flags.
The attack wraps a handle's `probabilities` in a `BlackBoxVictim`; nothing here is visible to the thief.
"""

from fmsteal.victims.answers import VictimError, to_probabilities
from fmsteal.victims.handle import VictimHandle
from fmsteal.victims.sources import DEFAULT_SOURCE, VICTIM_SOURCES, open_victim, parse_victim, resolve_victim
from fmsteal.victims.api import callable_victim  # after sources: it registers "api"

__all__ = ["VICTIM_SOURCES", "DEFAULT_SOURCE", "VictimHandle", "VictimError", "callable_victim", "open_victim",
           "parse_victim", "resolve_victim", "to_probabilities"]
