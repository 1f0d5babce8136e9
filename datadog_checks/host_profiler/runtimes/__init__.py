"""Runtimes of profiled processes (JVM, Node, Python...): how their frames are found and named."""
