"""Runtime-specific readers: what a process publishes about itself (OTel contexts) and runtime frames."""
