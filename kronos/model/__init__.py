"""The Kronos tokenizer and predictor, weight-compatible with the published `NeoQuasar/` checkpoints."""

from kronos.model.config import PredictorConfig, TokenizerConfig
from kronos.model.predictor import Kronos, PredictorCache
from kronos.model.tokenizer import KronosTokenizer, quantiser_loss_and_codes

__all__ = ["Kronos", "KronosTokenizer", "PredictorCache", "PredictorConfig", "TokenizerConfig",
           "quantiser_loss_and_codes"]
