"""The compute-node half of alignkit: train, evaluate, merge, data. Imports torch and friends."""
