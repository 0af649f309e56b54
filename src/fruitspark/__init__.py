"""fruitspark: images to transfer-learning features to PCA, on Spark, from a laptop to EMR."""

__version__ = "0.1.0"
