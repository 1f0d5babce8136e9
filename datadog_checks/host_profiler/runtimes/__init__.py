"""Runtimes of profiled processes: what a process publishes about itself (OTel contexts) and how its
runtime frames (JVM, Node) are found and named."""
