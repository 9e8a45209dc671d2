"""A small model package: layers subpackage, model file, variants, training script."""
