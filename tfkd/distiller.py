"""`tfkd.Distiller`: knowledge distillation as a `keras.Model` you `compile` and `fit`.

Unlike `keras.distillation.Distiller`, teacher and student may take different input sizes: each
batch is resized inside the step to each model's own input size (and not resized at all where
sizes match), so one dataset feeds a teacher at 224 and a student at 96. DeiT students get the
label loss on their class head and the distillation loss on their distillation head.

Batches of `(images, labels, teacher_logits)` (from `tfkd.TeacherCache.dataset`) skip the
teacher's forward pass: the stored logits are used instead.

`features=[...]` adds feature-distillation terms (`tfkd.features`): intermediate outputs of
both models, aligned, compared by the losses of `tfkd.feature_losses`.
"""

import inspect
import warnings

import keras
import tensorflow as tf
from keras import ops

from tfkd import features as features_lib
from tfkd import losses as losses_lib
from tfkd import models as models_lib
from tfkd.checks import check_classifier, checked_labels, label_errors

__all__ = ["Distiller", "build_optimizer", "check_classifier", "resize_images"]


def _resolve_loss(distillation_loss):
    if callable(distillation_loss):
        return distillation_loss
    if distillation_loss in losses_lib.LOSSES:
        return losses_lib.LOSSES[distillation_loss]
    raise ValueError(f"Unknown distillation_loss {distillation_loss!r}; use one of "
                     f"{sorted(losses_lib.LOSSES)} or a callable "
                     "f(student_logits, teacher_logits, labels, *, temperature, ...).")


def resize_images(images, size):
    """Casts a batch to float32 and resizes it to `size` = (height, width), as the Distiller
    does for each model inside the step; no resize op when the static size already matches.

    Use it wherever a model must see the same pixels it will see during distillation (for
    example when training the teacher on a dataset loaded at another size)."""
    images = ops.cast(images, "float32")
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    # Antialiasing only matters (and only costs) when shrinking.
    shrink = images.shape[1] is None or images.shape[1] > size[0] or images.shape[2] > size[1]
    return ops.image.resize(images, size, interpolation="bilinear", antialias=bool(shrink))


@keras.saving.register_keras_serializable(package="tfkd")
class Distiller(keras.Model):
    """Trains `student` to match a frozen `teacher` and the labels.

    The loss is `student_loss_weight * CE(labels, student) + (1 - student_loss_weight) *
    distillation_loss(student, teacher)`, plus `weight * loss` for each feature term. `fit` and
    `evaluate` report `loss`, `student_loss`, `distillation_loss`, `teacher_agreement` (share
    of examples where student and teacher top-1 agree), one `<loss>_loss` per feature term
    (e.g. `hint_loss`) and the compiled metrics; `predict` and `__call__` return student
    logits.

    `fit` and `evaluate` take `(images, labels)` batches, `(images, labels, sample_weight)` with
    (batch,) weights, or `(images, labels, teacher_logits)` with (batch, classes) precomputed
    teacher logits (see `tfkd.TeacherCache`): then the teacher does not run, or with feature
    terms runs only up to its deepest feature layer (features are not cached: a stage map is
    thousands of floats per image against a few logits). The two 3-tuples are told apart by
    the shape of their third element.

    Args:
        teacher: a `keras.Model` with a fixed input size that outputs logits. It is frozen
            (`trainable = False`, this modifies the object passed in) and always run with
            `training=False`.
        student: a `keras.Model` with a fixed input size that outputs as many logits.
        temperature: softening temperature T > 0 of the distillation loss.
        student_loss_weight: weight in [0, 1] of the hard-label loss.
        distillation_loss: a name from `tfkd.losses.LOSSES` ("kl", "hard", "dkd") or a callable
            `f(student_logits, teacher_logits, labels, *, temperature, ...) -> scalar`.
        distillation_loss_kwargs: extra keyword arguments for the loss, e.g.
            `{"alpha": 1.0, "beta": 8.0}` for "dkd".
        features: feature-distillation terms: a list of `tfkd.features.FeatureTerm`s or tuples
            `(teacher_layer, student_layer[, loss[, weight]])`, e.g.
            `tfkd.features.propose(teacher, student)`. Channel projections are trained with
            the student and belong to the Distiller: `distiller.student` exports unchanged.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Raises:
        ValueError: with what to do, for models without a fixed input size, differing class
            counts, softmax outputs, a temperature <= 0 or a weight outside [0, 1].
    """

    def __init__(self, teacher, student, temperature=4.0, student_loss_weight=0.5,
                 distillation_loss="kl", distillation_loss_kwargs=None, features=None,
                 **kwargs):
        super().__init__(**kwargs)
        self._teacher_size, teacher_classes = check_classifier(teacher, "teacher")
        self._student_size, student_classes = check_classifier(student, "student")
        if teacher_classes != student_classes:
            raise ValueError(f"The teacher outputs {teacher_classes} classes but the student "
                             f"outputs {student_classes}; build the student with "
                             f"num_classes={teacher_classes}.")
        self._class_count = teacher_classes
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}; "
                             "typical values are 1-20, 4 is a common default.")
        if isinstance(student_loss_weight, bool) \
                or not isinstance(student_loss_weight, (int, float)) \
                or not 0.0 <= student_loss_weight <= 1.0:
            raise ValueError(f"student_loss_weight must be in [0, 1], got "
                             f"{student_loss_weight!r}; 0 trains on the teacher only, 1 on "
                             "the labels only.")
        self._loss_fn = _resolve_loss(distillation_loss)
        self._loss_kwargs = dict(distillation_loss_kwargs or {})
        self.distillation_loss = distillation_loss
        self.temperature = float(temperature)
        self.student_loss_weight = float(student_loss_weight)
        teacher.trainable = False
        self.teacher = teacher
        self.student = student
        # DeiT students expose their two heads; None for every other model.
        self._student_heads = models_lib.distillation_heads(student)
        self.features = features_lib.as_terms(features)
        self._feature_plan = None
        if self.features:
            logits = self._student_heads.outputs if self._student_heads else [student.output]
            self._feature_plan = features_lib.FeaturePlan(self.features, teacher, student,
                                                          logits)
            self.feature_projections = self._feature_plan.projections
        self.feature_trackers = [keras.metrics.Mean(name=name) for name in (
            self._feature_plan.metric_names if self._feature_plan else [])]
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.agreement_tracker = keras.metrics.Mean(name="teacher_agreement")
        self.built = True  # both sub-models are built: their input sizes were checked above

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configures training, as `keras.Model.compile`.

        Args:
            optimizer: the student's optimizer.
            loss: the hard-label loss; default sparse categorical cross-entropy on logits.
                Integer labels are expected; one-hot labels need
                `keras.losses.CategoricalCrossentropy(from_logits=True)`.
            metrics: metrics on the student's logits, e.g. `["accuracy"]`.
            **kwargs: passed to `keras.Model.compile`.
        """
        self._student_loss = _student_loss(loss)
        self._student_loss_config = loss
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)
        build_optimizer(self)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config:
            config["loss"] = keras.saving.serialize_keras_object(self._student_loss_config)
        return config

    def compile_from_config(self, config):
        """Restores `compile()` when a saved Distiller is loaded, so training can continue."""
        # compile() creates the optimizer's variables, so its saved state can be loaded into them.
        self.compile(**keras.saving.deserialize_keras_object(config))

    def call(self, inputs, training=None):
        """Student logits; while training a DeiT student, its (class, distillation) logits, and
        with feature terms (class, distillation, features)."""
        x = resize_images(inputs, self._student_size)
        if training and self._feature_plan is not None:
            outputs = _as_list(self._feature_plan.student(x, training=True))
            count = self._feature_plan.logit_count
            class_logits, distill_logits = outputs[0], outputs[count - 1]
            return class_logits, distill_logits, tuple(outputs[count:])
        if training and self._student_heads is not None:
            return tuple(self._student_heads(x, training=True))
        return self.student(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Combines the hard-label and distillation losses; updates the loss metrics."""
        if y is None:
            raise ValueError("Distiller needs labels: pass (images, labels) batches to fit() "
                             "and evaluate(). With student_loss_weight=0 they still feed "
                             "the accuracy and DKD.")
        y = checked_labels(y, self._class_count)  # a clear error, not a NaN loss or a graph trace
        sample_weight, cached = self._split_cached_logits(sample_weight)
        if y_pred is None:
            y_pred = self(x, training=training)
        class_logits, distill_logits = (y_pred[:2] if isinstance(y_pred, tuple)
                                        else (y_pred, y_pred))
        teacher_logits, teacher_features = self._teacher_outputs(x, cached)
        # Keras losses return this replica's share of the global mean; undo that to combine.
        student_loss = self._student_loss(y, class_logits, sample_weight) * _replicas()
        distill_loss = self._call_loss(distill_logits, teacher_logits, y, sample_weight)
        w = self.student_loss_weight
        total = w * student_loss + (1.0 - w) * distill_loss
        batch = ops.shape(class_logits)[0]
        if self._feature_plan is not None:
            student_features = (y_pred[2] if isinstance(y_pred, tuple) and len(y_pred) > 2
                                else self._student_features(x))
            values = self._feature_plan.losses(student_features, teacher_features, sample_weight)
            for term, tracker, value in zip(self.features, self.feature_trackers, values):
                tracker.update_state(value, sample_weight=batch)
                total = total + term.weight * value
        self.student_loss_tracker.update_state(student_loss, sample_weight=batch)
        self.distillation_loss_tracker.update_state(distill_loss, sample_weight=batch)
        student_top1 = ops.argmax(_merge_heads(y_pred), axis=-1)
        agree = ops.cast(ops.equal(student_top1, ops.argmax(teacher_logits, axis=-1)), "float32")
        self.agreement_tracker.update_state(agree)
        # Each replica returns its share of the global mean, as Keras's own losses do.
        return total / _replicas()

    def _teacher_outputs(self, x, cached):
        """(teacher logits, teacher features or None); cached logits are used when given."""
        plan = self._feature_plan
        teacher_x = None if cached is not None and plan is None else resize_images(
            x, self._teacher_size)
        if plan is None:
            logits = cached if cached is not None else self.teacher(teacher_x, training=False)
            return ops.stop_gradient(ops.cast(logits, "float32")), None
        if cached is not None:
            features = _as_list(plan.teacher_features(teacher_x, training=False))
            return ops.cast(cached, "float32"), features
        outputs = _as_list(plan.teacher_with_logits(teacher_x, training=False))
        return ops.stop_gradient(ops.cast(outputs[0], "float32")), outputs[1:]

    def _student_features(self, x):
        """The student's features in evaluation, where `call` returned logits alone: a second
        forward pass (evaluation only; training gets them from `call`)."""
        outputs = _as_list(self._feature_plan.student(resize_images(x, self._student_size),
                                                      training=False))
        return outputs[self._feature_plan.logit_count:]

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`; a label outside [0, classes) raises a ValueError naming it."""
        with label_errors(self._class_count):
            return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        """`keras.Model.evaluate`; a label outside [0, classes) raises a ValueError naming it."""
        with label_errors(self._class_count):
            return super().evaluate(*args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        with label_errors(self._class_count):
            return super().train_on_batch(*args, **kwargs)

    def test_on_batch(self, *args, **kwargs):
        with label_errors(self._class_count):
            return super().test_on_batch(*args, **kwargs)

    def _call_loss(self, student_logits, teacher_logits, labels, sample_weight):
        kwargs = dict(self._loss_kwargs, temperature=self.temperature)
        if sample_weight is not None:
            if not _accepts(self._loss_fn, "sample_weight"):
                raise ValueError("sample_weight was given but the distillation loss does not "
                                 "accept a sample_weight keyword; add one to it.")
            kwargs["sample_weight"] = sample_weight
        return self._loss_fn(student_logits, teacher_logits, labels, **kwargs)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        sample_weight, _ = self._split_cached_logits(sample_weight)
        return super().compute_metrics(x, y, _merge_heads(y_pred), sample_weight)

    def _split_cached_logits(self, third):
        """(sample_weight, teacher_logits) from the third element of a batch.

        Keras hands any third element over as `sample_weight`. Weights are (batch,) or
        (batch, 1); a (batch, classes) float tensor is precomputed teacher logits.
        """
        if third is None or isinstance(third, (tuple, list, dict)):
            return third, None
        shape = tuple(third.shape)
        if len(shape) == 2 and shape[-1] == self._class_count and self._class_count > 1:
            return None, third
        return third, None

    @property
    def metrics(self):
        return super().metrics + [self.student_loss_tracker, self.distillation_loss_tracker,
                                  self.agreement_tracker, *self.feature_trackers]

    def get_config(self):
        config = super().get_config()
        loss = self.distillation_loss
        config.update({
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "temperature": self.temperature,
            "student_loss_weight": self.student_loss_weight,
            "distillation_loss": loss if isinstance(loss, str)
            else keras.saving.serialize_keras_object(loss),
            "distillation_loss_kwargs": self._loss_kwargs,
            "features": [term.get_config() for term in self.features],
        })
        return config

    def save(self, filepath, *args, **kwargs):
        """`keras.Model.save`; warns when a callable distillation_loss will not load back."""
        for loss in [self.distillation_loss, *(term.loss for term in self.features)]:
            _warn_if_unregistered(loss)
        return super().save(filepath, *args, **kwargs)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        if not isinstance(config["distillation_loss"], str):
            # An unregistered function fails here with Keras's own "Could not locate
            # function" message; `save` warned about it when the file was written.
            config["distillation_loss"] = keras.saving.deserialize_keras_object(
                config["distillation_loss"])
        return cls(**config)


def _warn_if_unregistered(loss):
    """Warns when `loss`, a callable, is not registered with Keras: the file would not load."""
    if isinstance(loss, str):
        return
    registered = keras.saving.get_registered_object(keras.saving.get_registered_name(loss))
    if registered is not loss:
        name = getattr(loss, "__name__", type(loss).__name__)
        warnings.warn(
            f"distillation_loss {name!r} is not registered with Keras, so "
            "keras.saving.load_model will not load this file: decorate the function with "
            "@keras.saving.register_keras_serializable(package='my_project') where it is "
            "defined, and import that module before saving and before load_model (or pass "
            f"custom_objects={{'{name}': {name}}} to load_model). The student alone, "
            "distiller.student.save(...), loads without it.", stacklevel=3)


def build_optimizer(model):
    """Creates a compiled model's optimizer variables now, eagerly, instead of in the first step.

    Keras creates them while tracing the first train step, lifting each one out of the graph:
    for MobileNetV3-Small's 568 Adam slots that took ~3.5 s on a 2-core CPU and slowed the rest
    of the trace; measured first `fit` epoch 11.4-11.9 s without, 6.1-6.7 s with (0.4 s of it
    here). Every fresh student of a sweep pays this. Call it after `compile()` (inside the
    strategy's scope, as `compile` itself).
    """
    model.optimizer.build(model.trainable_variables)


def _replicas():
    return float(tf.distribute.get_strategy().num_replicas_in_sync)


def _merge_heads(y_pred):
    """A DeiT student predicts the mean of its two heads' logits (features, if any, follow)."""
    if isinstance(y_pred, tuple):
        return (y_pred[0] + y_pred[1]) / 2.0
    return y_pred


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _accepts(fn, keyword):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return keyword in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _student_loss(loss):
    if loss is None:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if loss in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        # As strings Keras assumes probabilities; every tfkd model outputs logits.
        return keras.losses.get({"class_name": loss, "config": {"from_logits": True}})
    loss = keras.losses.get(loss)
    if getattr(loss, "get_config", None) and loss.get_config().get("from_logits") is False:
        raise ValueError(f"The student loss {loss.name!r} has from_logits=False but the student "
                         "outputs logits; pass from_logits=True.")
    return loss
