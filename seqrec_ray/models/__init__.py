"""Pure-PyTorch sequence encoders and the training losses that wrap them."""

from __future__ import annotations

from .base import SequenceEncoder
from .config import ENCODER_NAMES, EncoderConfig
from .heads import BehaviourHeads, OutcomeHeads
from .rnn import GRUEncoder, LSTMEncoder
from .transformer import TransformerEncoder

ENCODERS = {
    "lstm": LSTMEncoder,
    "gru": GRUEncoder,
    "transformer": TransformerEncoder,
}


def build_encoder(config: EncoderConfig) -> SequenceEncoder:
    encoder = ENCODERS[config.encoder](config)
    if config.behaviour_heads:
        encoder.heads = BehaviourHeads(config.dim)
    if config.outcome_heads:
        encoder.outcomes = OutcomeHeads(config.dim)
    return encoder


__all__ = ["ENCODERS", "ENCODER_NAMES", "EncoderConfig", "SequenceEncoder", "build_encoder"]
