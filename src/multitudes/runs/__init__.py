"""Where and by whom a run is written: run directories, checkpoints, the one writer, and the
process group and device."""
