"""hist_sd.model: fitted models and what defines a method and a task (specs, the slide data unit, forward passes).

Nothing here imports the training engine (:mod:`hist_sd.train`).
"""

from hist_sd.model._model import HistModel, load_model
from hist_sd.model._outcome import OutcomeModel
from hist_sd.model._section import Section, prepare_section
from hist_sd.model._spec import INPUT_KINDS, METHODS, MethodSpec, get_method, register_method
from hist_sd.model._survival import SurvivalModel
from hist_sd.model._tasks import TASKS, TaskSpec, get_task, register_task

__all__ = [
    "INPUT_KINDS",
    "METHODS",
    "TASKS",
    "HistModel",
    "MethodSpec",
    "OutcomeModel",
    "Section",
    "SurvivalModel",
    "TaskSpec",
    "get_method",
    "get_task",
    "load_model",
    "prepare_section",
    "register_method",
    "register_task",
]
