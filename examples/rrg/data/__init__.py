"""Data: synthetic studies, readers of the R2Gen layouts, tokenizer and the Grain input pipeline."""
