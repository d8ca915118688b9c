"""Command configs: one frozen dataclass per command (no heavy imports here)."""

from imgclf.config.data import PrepareConfig, ShowConfig, StatsConfig
from imgclf.config.fields import build_config, command_line, config_to_dict, load_config_file, opt
from imgclf.config.label_issues import LabelIssuesConfig
from imgclf.config.run import (CalibrateConfig, DemoConfig, EnhanceConfig, EvaluateConfig, ExplainConfig, ExportConfig,
                               InspectConfig, MistakesConfig, PredictConfig, ReportConfig)
from imgclf.config.train import LrFindConfig, TrainConfig

__all__ = [
    "CalibrateConfig", "DemoConfig", "EnhanceConfig", "EvaluateConfig", "ExplainConfig", "ExportConfig", "InspectConfig",
    "LabelIssuesConfig", "LrFindConfig", "MistakesConfig", "PredictConfig", "PrepareConfig", "ReportConfig", "ShowConfig",
    "StatsConfig", "TrainConfig",
    "build_config", "command_line", "config_to_dict", "load_config_file", "opt",
]
