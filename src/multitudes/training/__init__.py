"""The run loop of an arm, its scoring and exact-resume state, and the train and compare protocols."""
