"""End-to-end experiments built on the one training loop: sleep staging and images."""
