"""Dropout whose random state is saved with the weights, so training resumes exactly.

Keras 3.15 does not save a Dropout layer's random state (its SeedGenerator; keras-team/keras
#19796): a model reloaded from `.keras` (or `load_weights`) draws other dropout masks from its
first step on, and training continued after the reload drifts from training without it
(MobileViT-XXS, one epoch after the reload: weights differ by up to 0.03). `Dropout` here is
`keras.layers.Dropout` plus that state in its saved variables.

The ViT/DeiT family uses it (its files need `import tfkd` anyway, for its own layers). The other
families keep Keras's Dropout so their `.keras` files load with Keras alone, as deployments
often do; `with_saved_dropout_state(model)` swaps it in for any model, at that price.
"""

import keras

_STATE = "seed_generator_state"


@keras.saving.register_keras_serializable(package="tfkd")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` that saves and restores its random state with its weights."""

    def save_own_variables(self, store):
        super().save_own_variables(store)
        generator = getattr(self, "seed_generator", None)  # none when rate == 0
        if generator is not None:
            store[_STATE] = keras.ops.convert_to_numpy(generator.state)

    def load_own_variables(self, store):
        generator = getattr(self, "seed_generator", None)
        keys = list(store.keys())
        if generator is not None and _STATE in keys:
            generator.state.assign(store[_STATE])
        super().load_own_variables({k: store[k] for k in keys if k != _STATE})


def with_saved_dropout_state(model):
    """A copy of `model` (same weights) whose Dropout layers save their random state.

    Training continued after a `.keras` reload then matches training without it. The copy's
    files need `import tfkd` to load (the layer is tfkd's).
    """
    def clone(layer):
        config = layer.get_config()
        if type(layer) is keras.layers.Dropout:
            return Dropout.from_config(config)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
