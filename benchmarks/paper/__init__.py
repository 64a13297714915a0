"""Reproduction of the seed paper (Zheng et al. 2024) on Fashion-MNIST; entry point: run.py."""
