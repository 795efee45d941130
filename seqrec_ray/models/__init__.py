"""Pure-PyTorch sequence encoders and the training losses that wrap them."""

from __future__ import annotations

from .base import SequenceEncoder
from .config import ENCODER_NAMES, EncoderConfig
from .rnn import GRUEncoder, LSTMEncoder
from .transformer import TransformerEncoder

ENCODERS = {
    "lstm": LSTMEncoder,
    "gru": GRUEncoder,
    "transformer": TransformerEncoder,
}


def build_encoder(config: EncoderConfig) -> SequenceEncoder:
    return ENCODERS[config.encoder](config)


__all__ = ["ENCODERS", "ENCODER_NAMES", "EncoderConfig", "SequenceEncoder", "build_encoder"]
