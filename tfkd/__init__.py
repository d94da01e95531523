"""tfkd: distill Keras image classifiers into small students and ship them to the edge.

    teacher = tfkd.create_model("convnet_m", image_size=32, num_classes=10)
    student = tfkd.create_model("mobilenetv3_small", image_size=32, num_classes=10)
    distiller = tfkd.Distiller(teacher=teacher, student=student)
"""

from tfkd import (bench, data, distribute, export, feature_losses, features, losses, models, qat,
                  quantization, teacher_cache)
from tfkd.distiller import Distiller
from tfkd.features import FeatureTerm
from tfkd.losses import LOSSES
from tfkd.models import create_model, describe, list_models, min_image_size
from tfkd.teacher_cache import TeacherCache

__version__ = "0.1.0"

__all__ = ["Distiller", "FeatureTerm", "LOSSES", "TeacherCache", "bench", "create_model", "data",
           "describe", "distribute", "export", "feature_losses", "features", "list_models",
           "losses", "min_image_size", "models", "qat", "quantization", "teacher_cache"]
