"""Torch-semantics helpers that converted code embeds (see `retarget.rewrite.support`)."""
