"""Triton kernels. Importing this package needs Triton; fastpanc.ops imports it lazily."""
