"""tfkd: knowledge distillation for Keras 3, from teacher to int8 TFLite on the edge."""

from setuptools import find_packages, setup

setup(
    name="tfkd",
    version="0.1.0",
    description="Distill large Keras image classifiers into small students and ship them "
    "to the edge as TFLite models.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tfkd", "tfkd.*", "android_bench", "android_bench.*"]),
    install_requires=[
        "tensorflow==2.21.*",
        "keras==3.15.*",
        "ai-edge-litert==2.3.*",
        "absl-py",
        "numpy>=1.26,<3",
        "matplotlib",
        # Recipes log every run for TensorBoard; TensorFlow 2.21 no longer installs it.
        "tensorboard==2.21.*",
    ],
    extras_require={
        # keras-hub pulls in the full tensorflow wheel and tensorflow-text: opt-in only.
        "hub": ["keras-hub==0.32.*"],
        # Importing tfmot flips tf.keras to tf_keras for the whole process: opt-in only.
        "qat": ["tensorflow-model-optimization==0.8.1", "tf-keras==2.21.*"],
        # TFDS datasets (tfds:NAME); importlib_resources is needed at download time.
        "tfds": ["tensorflow-datasets==4.9.*", "importlib_resources"],
        # The tests cover the optional paths too: `make test` installs them.
        "dev": ["pytest>=8", "pillow", "tensorflow-datasets==4.9.*", "importlib_resources",
                "keras-hub==0.32.*"],
    },
)
