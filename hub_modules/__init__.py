"""Build TF Hub modules from any model tfx_transfer reads: a BERT encoder SavedModel with the tfhub.dev encoder
interface (`encoder.py`, `python -m hub_modules.export_encoder`) and its matching preprocessor (`preprocessor.py`,
`python -m hub_modules.export_preprocessor`)."""
