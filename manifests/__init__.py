"""Dataset readers, Parquet schemas, subject folds and the aligned-store layout.

Never imports torch or prefect: this package is what every other one reads data through.
"""
