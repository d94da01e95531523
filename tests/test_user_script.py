"""The script a user writes: EfficientNet-B0 at 64 distilled into MobileViT-XXS at 32 on real
Fashion-MNIST with fit(), then distiller and student saved, reloaded and used again."""

import keras
import numpy as np

import tfkd


def test_efficientnet_b0_at_64_into_mobilevit_xxs_at_32(tmp_path):
    keras.utils.set_random_seed(0)
    train = tfkd.data.load("fashion_mnist", "train", image_size=64, batch_size=32, limit=128)
    test = tfkd.data.load("fashion_mnist", "test", image_size=64, batch_size=64, limit=64)
    teacher = tfkd.create_model("efficientnet_b0", image_size=64, num_classes=10)
    student = tfkd.create_model("mobilevit_xxs", image_size=32, num_classes=10)
    distiller = tfkd.Distiller(teacher=teacher, student=student)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    history = distiller.fit(train, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    before = distiller.evaluate(test, verbose=0, return_dict=True)

    distiller.save(tmp_path / "distiller.keras")
    distiller.student.save(tmp_path / "student.keras")
    reloaded = keras.saving.load_model(tmp_path / "distiller.keras")
    after = reloaded.evaluate(test, verbose=0, return_dict=True)
    for key in ("loss", "accuracy", "teacher_agreement"):
        np.testing.assert_allclose(after[key], before[key], rtol=1e-4, atol=1e-6)
    reloaded.fit(train, epochs=1, verbose=0)  # training continues from the saved state
    assert int(reloaded.optimizer.iterations) == 8

    images, _ = next(iter(test))
    small = keras.ops.image.resize(keras.ops.cast(images, "float32"), (32, 32), antialias=True)
    plain = keras.saving.load_model(tmp_path / "student.keras")
    np.testing.assert_allclose(plain.predict(small, verbose=0),
                               student.predict(small, verbose=0), rtol=1e-4, atol=1e-5)
